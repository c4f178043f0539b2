"""rgemma: RecurrentGemma (Griffin) inference, from Python.

A thin layer over librgemma.so (include/rgemma.h) with ctypes and nothing
else. The library is found through the environment variable RGEMMA_LIB (a
path), then beside this package, then by the system loader
(LD_LIBRARY_PATH, ldconfig).

    import rgemma
    model = rgemma.Model("path/to/model")
    tok = model.tokenizer                  # the one beside the model, or None
    for piece in model.generate("The capital of France is", max_tokens=20):
        print(piece.text, end="", flush=True)

Failures of the library raise RgemmaError with its message (rg_last_error).
"""
import ctypes
import os
from collections import namedtuple
from ctypes import POINTER, byref, c_float, c_int, c_int32, c_size_t, c_void_p

from . import _lib
from ._lib import STOP_REASONS

_C, LIBRARY_PATH, _LIB_VERSION = _lib.load()

__all__ = ['RgemmaError', 'Model', 'Tokenizer', 'State', 'Generation', 'Token', 'GenerateResult', 'version',
           'set_threads', 'get_threads', 'LIBRARY_PATH']


def version():
    """The loaded library's version (rg_version())."""
    return _LIB_VERSION


__version__ = _LIB_VERSION


class RgemmaError(Exception):
    """A failure reported by librgemma; str() is the library's message."""


def _fail(what=None):
    msg = (_C.rg_last_error() or b'').decode('utf-8', 'replace')
    raise RgemmaError(msg or what or 'librgemma call failed')


def _path(p):
    if not isinstance(p, (str, bytes, os.PathLike)):
        raise TypeError('a path is needed, got %s' % type(p).__name__)
    return os.fsencode(p)


def _ids(ids, what='token ids'):
    """A ctypes int32 array of ids, checked to be ints that fit (the vocabulary
    range is the library's to check)."""
    if isinstance(ids, (str, bytes)):
        raise TypeError('%s must be a sequence of ints, not %s' % (what, type(ids).__name__))
    ids = list(ids)
    for i, t in enumerate(ids):
        if isinstance(t, bool) or not isinstance(t, int):
            try:
                t = ids[i] = int(t.__index__())  # numpy integers
            except (AttributeError, TypeError):
                raise TypeError('%s: item %d is %s, not an int' % (what, i, type(t).__name__)) from None
        if not -2**31 <= t < 2**31:
            raise ValueError('%s: item %d (%d) is out of the int32 range' % (what, i, t))
    return (c_int32 * max(len(ids), 1))(*ids), len(ids)


def set_threads(n):
    """Worker threads of the kernels (default: all cores)."""
    _C.rg_set_threads(int(n))


def get_threads():
    return _C.rg_get_threads()


try:
    import numpy as _np
except ImportError:
    _np = None


def _logits_out(buf, shape, numpy):
    if numpy is None:
        numpy = _np is not None
    if numpy:
        if _np is None:
            raise ImportError('rgemma: numpy=True but numpy is not installed')
        return _np.frombuffer(buf, dtype=_np.float32).reshape(shape)  # shares buf, keeps it alive
    return memoryview(buf).cast('B').cast('f', shape)


class _Owned:
    """An object of the library, released by its C free function (_free, the
    name in _C) on close(), at the end of a with block, or when collected."""
    _what = 'object'
    _free = None

    def close(self):
        if getattr(self, '_h', None):
            getattr(_C, self._free)(self._h)
            self._h = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handle(self):
        if not self._h:
            raise ValueError('rgemma: the %s is closed' % self._what)
        return self._h


class Tokenizer(_Owned):
    """A tokenizer: a tokenizer.model, tokenizer.json, a folder holding one, or
    a .gguf model with one inside."""
    _what, _free = 'tokenizer', 'rg_tokenizer_free'

    def __init__(self, path=None, _handle=None):
        if _handle is not None:
            self._h = _handle
            return
        h = c_void_p()
        rc = _C.rg_tokenizer_load(_path(path), byref(h))
        if rc != 0:
            _fail()
        self._h = h

    @property
    def vocab_size(self):
        return _C.rg_tokenizer_vocab_size(self._handle())

    @property
    def bos(self):
        return _C.rg_tokenizer_bos(self._handle())

    @property
    def eos(self):
        return _C.rg_tokenizer_eos(self._handle())

    def piece_id(self, piece):
        """Id of a piece spelled as text (e.g. "<end_of_turn>"), or None."""
        i = _C.rg_tokenizer_piece_id(self._handle(), piece.encode())
        return None if i < 0 else i

    def encode(self, text, add_bos=False, add_eos=False, parse_special=True):
        """Token ids of text (str or bytes). parse_special=False encodes the
        spelling of control pieces (<start_of_turn>, ...) as plain text."""
        data = text.encode('utf-8') if isinstance(text, str) else bytes(text)
        out = POINTER(c_int32)()
        n = c_size_t()
        if _C.rg_tokenize_ex(self._handle(), data, len(data), int(add_bos), int(add_eos), int(parse_special),
                             byref(out), byref(n)) != 0:
            _fail()
        try:
            return out[:n.value]
        finally:
            _lib.free(ctypes.cast(out, c_void_p))

    def decode_bytes(self, ids):
        arr, n = _ids(ids)
        out = c_void_p()
        ln = c_size_t()
        if _C.rg_detokenize(self._handle(), arr, n, byref(out), byref(ln)) != 0:
            _fail()
        try:
            return ctypes.string_at(out, ln.value)
        finally:
            _lib.free(out)

    def decode(self, ids, errors='replace'):
        """Text of ids (bytes that are not UTF-8 become U+FFFD by default)."""
        return self.decode_bytes(ids).decode('utf-8', errors)


class Model(_Owned):
    """A model: a Hugging Face folder (config.json + safetensors), a
    safetensors file with config.json beside it, or a .gguf file. The weights
    are memory-mapped."""
    _what, _free = 'model', 'rg_model_free'

    def __init__(self, path):
        self.path = os.fspath(path)
        h = c_void_p()
        if _C.rg_model_load(_path(path), byref(h)) != 0:
            _fail()
        self._h = h
        self._tok = None
        self._tok_looked = False

    def close(self):
        if getattr(self, '_tok', None):
            self._tok.close()
        super().close()

    @property
    def config(self):
        """The architecture as a dict (rg_config's fields)."""
        c = _C.rg_model_config(self._handle()).contents
        d = {name: getattr(c, name) for name, _ in c._fields_ if name != 'pattern'}
        d['pattern'] = ['attention' if c.pattern[i] else 'recurrent' for i in range(c.pattern_len)]
        return d

    @property
    def vocab_size(self):
        return _C.rg_model_config(self._handle()).contents.vocab_size

    @property
    def tokenizer(self):
        """The model's tokenizer (inside a .gguf, or beside the model), or None
        when there is none. One that exists but cannot be loaded raises."""
        if not self._tok_looked:
            h = c_void_p()
            rc = _C.rg_tokenizer_find(_path(self.path), byref(h))
            if rc == -1:
                _fail()
            if rc == 0:
                tok = Tokenizer(_handle=h)
                if _C.rg_tokenizer_check_vocab(h, self.vocab_size) != 0:
                    msg = _C.rg_last_error()
                    tok.close()
                    raise RgemmaError(msg.decode('utf-8', 'replace'))
                self._tok = tok
            self._tok_looked = True
        return self._tok

    @property
    def kv_type(self):
        """The attention windows' element type of the states made from now on:
        'f32' (the default) or 'f16' (half the memory; rg_model_set_kv_type)."""
        return _C.rg_model_kv_type(self._handle()).decode()

    @kv_type.setter
    def kv_type(self, name):
        if _C.rg_model_set_kv_type(self._handle(), str(name).encode()) != 0:
            _fail()

    def new_state(self):
        return State(self)

    def forward(self, state, ids, all_logits=False, numpy=None):
        """Run ids through the model at the state's position, advancing it.
        Returns the last token's logits (shape (V,)), or every token's
        (shape (n, V)) with all_logits=True: a NumPy float32 array when numpy
        is importable (numpy=None) or asked for (True), else a memoryview of
        floats (numpy=False)."""
        if not isinstance(state, State):
            raise TypeError('forward: state must be an rgemma.State')
        arr, n = _ids(ids)
        v = self.vocab_size
        shape = (n, v) if all_logits else (v,)
        buf = (c_float * (n * v if all_logits else v))()
        if _C.rg_forward(self._handle(), state._handle(), arr, n, buf, int(bool(all_logits))) != 0:
            _fail()
        return _logits_out(buf, shape, numpy)

    def generate(self, prompt, state=None, tokenizer=None, max_tokens=None, stop=(), stop_ids=(),
                 ignore_eos=False, **sampling):
        """A Generation: iterate over it for the tokens as they come.

        prompt: text (encoded with BOS by the tokenizer) or token ids.
        state: continue this state's sequence (default: a new, empty one).
        tokenizer: default the model's (None when it has none: ids only).
        max_tokens: None = until EOS or a stop. stop: strings that end the
        output (not emitted); stop_ids: ids that end it besides EOS.
        sampling: temperature (0 = greedy), top_k, top_p, min_p,
        repeat_penalty, repeat_last_n, presence_penalty, frequency_penalty,
        seed; the library's defaults for the others."""
        return Generation(self, prompt, state, tokenizer, max_tokens, stop, stop_ids, ignore_eos, sampling)


class State(_Owned):
    """One sequence's memory (conv, RG-LRU and attention window) and its
    position."""
    _what, _free = 'state', 'rg_state_free'

    def __init__(self, model):
        self._model = model  # the state is used with it; keep it alive
        h = _C.rg_state_new(model._handle())
        if not h:
            _fail('rg_state_new failed')
        self._h = c_void_p(h)

    @property
    def pos(self):
        """Tokens processed so far."""
        return _C.rg_state_pos(self._handle())

    def reset(self):
        _C.rg_state_reset(self._handle())

    def copy(self):
        """A new state holding the same sequence."""
        s = State(self._model)
        s.copy_from(self)
        return s

    def copy_from(self, other):
        if _C.rg_state_copy(self._handle(), other._handle()) != 0:
            _fail()

    def save(self, path, pending=()):
        """Write a state file; pending: up to 16 ids that belong to the sequence
        but are not processed yet (a generation's result.next_token)."""
        arr, n = _ids(pending, 'pending ids')
        if _C.rg_state_save_pending(self._handle(), arr, n, _path(path)) != 0:
            _fail()

    def load(self, path):
        """Read a state file (of a model with the same config); returns its
        pending ids. The state is unchanged when the file is refused."""
        pending = (c_int32 * _lib.RG_STATE_MAX_PENDING)()
        n = c_int()
        if _C.rg_state_load_pending(self._handle(), _path(path), pending, byref(n)) != 0:
            _fail()
        return pending[:n.value]


Token = namedtuple('Token', 'id text')
Token.__doc__ = """A generated token and the text that became complete with it
(str; None without a tokenizer). The last item may have id None: text held back
until the end (e.g. the start of a stop string that did not complete)."""

GenerateResult = namedtuple('GenerateResult',
                            'stop_reason next_token prompt_tokens generated_tokens prompt_seconds '
                            'generate_seconds seed')


class Generation:
    """Iterator over a generation, one library step (rg_seq_step) at a time.
    After the last item, .result says why it stopped; .tokens holds the ids
    output so far. result.next_token is the sampled token the state has not
    processed: a continuation starts its prompt with it."""

    def __init__(self, model, prompt, state, tokenizer, max_tokens, stop, stop_ids, ignore_eos, sampling):
        self._q = None
        self.model = model
        self.tokens = []
        self.result = None
        tok = model.tokenizer if tokenizer is None else tokenizer
        if isinstance(prompt, str):
            if tok is None:
                raise ValueError('generate: a text prompt needs a tokenizer (the model has none); give token ids')
            prompt = tok.encode(prompt, add_bos=True)
        self.state = state if state is not None else State(model)
        p = _lib.rg_generate_params()
        _C.rg_generate_params_default(byref(p))
        p.max_tokens = -1 if max_tokens is None else int(max_tokens)
        for k, val in sampling.items():
            if k not in dict(_lib.rg_sampling_params._fields_):
                raise TypeError('generate: unknown parameter %r' % k)
            setattr(p.sampling, k, val)
        if isinstance(stop, str):
            stop = [stop]
        stop_b = [s.encode('utf-8') if isinstance(s, str) else bytes(s) for s in stop]
        self._stop = (ctypes.c_char_p * max(len(stop_b), 1))(*stop_b)
        p.stop, p.n_stop = self._stop, len(stop_b)
        self._stop_ids, p.n_stop_ids = _ids(stop_ids, 'stop_ids')
        p.stop_ids = self._stop_ids
        p.ignore_eos = int(bool(ignore_eos))
        self._params = p  # the library keeps pointers into these until the end
        self._prompt, n = _ids(prompt, 'prompt')
        self._tok = tok
        self._pending = []

        def on_token(ctx, token, text, n):
            t = ctypes.string_at(text, n).decode('utf-8', 'replace') if text else None
            self._pending.append((token, t))
            return 0

        self._cb = _lib.rg_token_cb(on_token)
        q = _C.rg_seq_new(model._handle(), tok._handle() if tok else None, self.state._handle(), self._prompt, n,
                          byref(p), self._cb, None)
        if not q:
            _fail()
        self._q = c_void_p(q)

    def __iter__(self):
        return self

    def __next__(self):
        while not self._pending:
            if self._q is None:
                raise StopIteration
            if _C.rg_seq_done(self._q):
                self._finish()
                continue
            seqs = (c_void_p * 1)(self._q)
            if _C.rg_seq_step(seqs, 1, 0) != 0:
                msg = (_C.rg_last_error() or b'').decode('utf-8', 'replace')
                self.close()
                raise RgemmaError(msg)
        token, text = self._pending.pop(0)
        if token < 0:
            if not text:
                return self.__next__()
            return Token(None, text)
        self.tokens.append(token)
        return Token(token, text)

    def _finish(self):
        r = _C.rg_seq_result(self._q).contents
        self.result = GenerateResult(STOP_REASONS[r.stop_reason] if 0 <= r.stop_reason < len(STOP_REASONS)
                                     else r.stop_reason, None if r.next_token < 0 else r.next_token,
                                     r.prompt_tokens, r.generated_tokens, r.prompt_seconds, r.generate_seconds,
                                     r.seed)
        err = _C.rg_seq_error(self._q).decode('utf-8', 'replace') if r.stop_reason == _lib.RG_STOP_ERROR else ''
        self.close()
        if err:
            raise RgemmaError(err)

    def close(self):
        """End the generation early (the state keeps what was processed)."""
        if getattr(self, '_q', None):
            _C.rg_seq_free(self._q)
            self._q = None

    __del__ = close

    def text(self):
        """Run to the end; the whole output text ('' without a tokenizer)."""
        return ''.join(t.text or '' for t in self)
