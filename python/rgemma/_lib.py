"""ctypes declarations of librgemma (include/rgemma.h) and the search for
the shared library. Only what the Python classes in __init__.py use."""
import ctypes
import ctypes.util
import glob
import os
from ctypes import (POINTER, Structure, c_char_p, c_double, c_float, c_int, c_int32, c_int64, c_size_t,
                    c_uint64, c_void_p)

# The ABI these declarations describe: a 0.x minor release may change it (and
# the soname), so the library must be of the same major.minor.
ABI = (0, 1)
SONAME = 'librgemma.so.%d.%d' % ABI if ABI[0] == 0 else 'librgemma.so.%d' % ABI[0]

RG_MAX_PATTERN = 16
RG_STATE_MAX_PENDING = 16
RG_STOP_ERROR = 5
STOP_REASONS = ('none', 'eos', 'stop_string', 'length', 'callback', 'error')


class rg_config(Structure):
    _fields_ = [('vocab_size', c_int), ('hidden_size', c_int), ('lru_width', c_int), ('num_heads', c_int),
                ('head_dim', c_int), ('num_kv_heads', c_int), ('mlp_width', c_int), ('num_layers', c_int),
                ('window', c_int), ('conv_width', c_int), ('logits_soft_cap', c_float), ('rms_norm_eps', c_float),
                ('rope_theta', c_float), ('partial_rotary_factor', c_float), ('embed_scale', c_float),
                ('bos_id', c_int), ('eos_id', c_int), ('pad_id', c_int), ('pattern_len', c_int),
                ('pattern', c_int * RG_MAX_PATTERN)]


class rg_sampling_params(Structure):
    _fields_ = [('temperature', c_float), ('top_k', c_int), ('top_p', c_float), ('min_p', c_float),
                ('repeat_penalty', c_float), ('repeat_last_n', c_int), ('presence_penalty', c_float),
                ('frequency_penalty', c_float), ('seed', c_uint64)]


class rg_generate_params(Structure):
    _fields_ = [('max_tokens', c_int), ('stop', POINTER(c_char_p)), ('n_stop', c_int),
                ('stop_ids', POINTER(c_int32)), ('n_stop_ids', c_int), ('sampling', rg_sampling_params),
                ('ignore_eos', c_int), ('cancel', POINTER(c_int)), ('history', POINTER(c_int32)),
                ('n_history', c_int)]


class rg_generate_result(Structure):
    _fields_ = [('prompt_tokens', c_int), ('generated_tokens', c_int), ('prompt_seconds', c_double),
                ('generate_seconds', c_double), ('stop_reason', c_int), ('next_token', c_int32),
                ('seed', c_uint64)]


# int (*rg_token_cb)(void *ctx, int32_t token, const char *text, size_t len);
# text as c_void_p: it may be NULL and is not NUL-terminated
rg_token_cb = ctypes.CFUNCTYPE(c_int, c_void_p, c_int32, c_void_p, c_size_t)

# name: (restype, argtypes)
_FUNCS = {
    'rg_version': (c_char_p, []),
    'rg_last_error': (c_char_p, []),
    'rg_model_load': (c_int, [c_char_p, POINTER(c_void_p)]),
    'rg_model_free': (None, [c_void_p]),
    'rg_model_config': (POINTER(rg_config), [c_void_p]),
    'rg_model_set_kv_type': (c_int, [c_void_p, c_char_p]),
    'rg_model_kv_type': (c_char_p, [c_void_p]),
    'rg_state_new': (c_void_p, [c_void_p]),
    'rg_state_free': (None, [c_void_p]),
    'rg_state_reset': (None, [c_void_p]),
    'rg_state_copy': (c_int, [c_void_p, c_void_p]),
    'rg_state_pos': (c_int64, [c_void_p]),
    'rg_state_save': (c_int, [c_void_p, c_char_p]),
    'rg_state_load': (c_int, [c_void_p, c_char_p]),
    'rg_state_save_pending': (c_int, [c_void_p, POINTER(c_int32), c_int, c_char_p]),
    'rg_state_load_pending': (c_int, [c_void_p, c_char_p, POINTER(c_int32), POINTER(c_int)]),
    'rg_forward': (c_int, [c_void_p, c_void_p, POINTER(c_int32), c_int, POINTER(c_float), c_int]),
    'rg_set_threads': (None, [c_int]),
    'rg_get_threads': (c_int, []),
    'rg_tokenizer_load': (c_int, [c_char_p, POINTER(c_void_p)]),
    'rg_tokenizer_find': (c_int, [c_char_p, POINTER(c_void_p)]),
    'rg_tokenizer_check_vocab': (c_int, [c_void_p, c_int]),
    'rg_tokenizer_free': (None, [c_void_p]),
    'rg_tokenizer_vocab_size': (c_int, [c_void_p]),
    'rg_tokenizer_bos': (c_int, [c_void_p]),
    'rg_tokenizer_eos': (c_int, [c_void_p]),
    'rg_tokenizer_piece_id': (c_int32, [c_void_p, c_char_p]),
    'rg_tokenize_ex': (c_int, [c_void_p, c_char_p, c_size_t, c_int, c_int, c_int, POINTER(POINTER(c_int32)),
                               POINTER(c_size_t)]),
    'rg_detokenize': (c_int, [c_void_p, POINTER(c_int32), c_size_t, POINTER(c_void_p), POINTER(c_size_t)]),
    'rg_generate_params_default': (None, [POINTER(rg_generate_params)]),
    'rg_seq_new': (c_void_p, [c_void_p, c_void_p, c_void_p, POINTER(c_int32), c_int, POINTER(rg_generate_params),
                              rg_token_cb, c_void_p]),
    'rg_seq_step': (c_int, [POINTER(c_void_p), c_int, c_int]),
    'rg_seq_done': (c_int, [c_void_p]),
    'rg_seq_stop': (None, [c_void_p]),
    'rg_seq_result': (POINTER(rg_generate_result), [c_void_p]),
    'rg_seq_error': (c_char_p, [c_void_p]),
    'rg_seq_free': (None, [c_void_p]),
}


def _candidates():
    env = os.environ.get('RGEMMA_LIB')
    if env:  # an explicit choice is the only one tried
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    found = sorted(glob.glob(os.path.join(here, 'librgemma.so*')))
    found += [SONAME, 'librgemma.so']  # the system loader: LD_LIBRARY_PATH, ld.so.cache
    lib = ctypes.util.find_library('rgemma')
    if lib:
        found.append(lib)
    return found


def load():
    """The librgemma CDLL with its functions declared; ImportError when none
    is found or it is of another ABI."""
    tried = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append('%s (%s)' % (path, e))
            continue
        version = _declare(lib, path)
        if tuple(int(x) for x in version.split('.')[:2]) != ABI:
            raise ImportError('rgemma: %s is librgemma %s; this package needs %d.%d.x' % (path, version, *ABI))
        return lib, path, version
    raise ImportError('rgemma: librgemma not found (set RGEMMA_LIB to the path of librgemma.so); tried: '
                      + '; '.join(tried))


def _declare(lib, path):
    try:
        lib.rg_version.restype = c_char_p
        version = lib.rg_version().decode()
    except AttributeError:
        raise ImportError('rgemma: %s has no rg_version(): not librgemma, or older than 0.1' % path) from None
    for name, (res, args) in _FUNCS.items():
        try:
            f = getattr(lib, name)
        except AttributeError:
            raise ImportError('rgemma: %s lacks %s()' % (path, name)) from None
        f.restype, f.argtypes = res, args
    return version


# free() for the buffers the library mallocs (rg_tokenize, rg_detokenize):
# the process's allocator, which is the one librgemma calls
_libc = ctypes.CDLL(None)
free = _libc.free
free.restype, free.argtypes = None, [c_void_p]
