"""Tests of the Python package over librgemma.so (run by tests/cli/python.sh
from the repository root). Environment: RGEMMA_LIB (the library),
RGEMMA_SHARED (sibling data with more golden cases), RGEMMA_TEST_SMALL_MODEL
(a random model with a tokenizer beside it), RGEMMA_TEST_ABI (struct layouts
printed by abi_layout.c)."""
import array
import ctypes
import json
import os
import sys
import tempfile
import unittest

import rgemma
from rgemma import _lib

try:
    import numpy
except ImportError:
    numpy = None
    print('note: numpy is not importable: the NumPy path of Model.forward is not tested (memoryviews are)',
          file=sys.stderr)


def golden_cases():
    roots = ['tests/data/golden']
    shared = os.environ.get('RGEMMA_SHARED', '../shared')
    if os.path.isdir(os.path.join(shared, 'testdata/golden')):
        roots.append(os.path.join(shared, 'testdata/golden'))
    cases = []
    for root in roots:
        for name in sorted(os.listdir(root)):
            d = os.path.join(root, name)
            if os.path.isfile(os.path.join(d, 'golden.json')):
                cases.append(d)
    return cases


def load_json(path):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def read_f32(path):
    a = array.array('f')
    with open(path, 'rb') as f:
        a.frombytes(f.read())
    if sys.byteorder != 'little':
        a.byteswap()
    return a


CASE = 'tests/data/golden/dev_4layer'


def setUpModule():
    # results, not speed: on a busy machine the kernel threads' hand-offs cost
    # far more than these tiny models' work
    rgemma.set_threads(1)
    assert rgemma.get_threads() == 1


class GoldenTest(unittest.TestCase):
    def test_greedy_tokens(self):
        cases = golden_cases()
        self.assertGreaterEqual(len(cases), 1)
        for case in cases:
            with self.subTest(case=case):
                g = load_json(os.path.join(case, 'golden.json'))['greedy']
                with rgemma.Model(case) as m:
                    gen = m.generate(g['prompt'], max_tokens=len(g['generated']), temperature=0, ignore_eos=True)
                    got = [t.id for t in gen]
                    self.assertEqual(got, g['generated'])
                    self.assertEqual(gen.tokens, g['generated'])
                    self.assertEqual(gen.result.stop_reason, 'length')
                    self.assertEqual(gen.result.prompt_tokens, len(g['prompt']))
                    self.assertEqual(gen.state.pos, len(g['prompt']) + len(g['generated']) - 1)

    def test_logits_step_by_step(self):
        # the reference's greedy loop with forward: prefill prompt[:-1], then
        # one token at a time; each row within the golden tolerance
        gj = load_json(os.path.join(CASE, 'golden.json'))
        g, v = gj['greedy'], None
        want = read_f32(os.path.join(CASE, 'greedy_logits.bin'))
        with rgemma.Model(CASE) as m:
            v = m.vocab_size
            s = m.new_state()
            m.forward(s, g['prompt'][:-1], numpy=False)
            feed = [g['prompt'][-1]] + g['generated'][:-1]
            worst = 0.0
            for k, tok in enumerate(feed):
                row = m.forward(s, [tok], numpy=False)
                self.assertIsInstance(row, memoryview)
                self.assertEqual((row.format, row.shape), ('f', (v,)))
                worst = max(worst, max(abs(row[i] - want[k * v + i]) for i in range(v)))
                self.assertEqual(max(range(v), key=row.__getitem__), g['generated'][k])
            self.assertLess(worst, 5e-4)

    def test_all_logits_shape(self):
        with rgemma.Model(CASE) as m:
            s = m.new_state()
            rows = m.forward(s, [2, 10, 11], all_logits=True, numpy=False)
            self.assertEqual(rows.shape, (3, m.vocab_size))
            last = m.forward(m.new_state(), [2, 10, 11], numpy=False)
            # the last-row-only path may take another kernel: float rounding apart
            for a, b in zip(rows.tolist()[2], last.tolist()):
                self.assertAlmostEqual(a, b, delta=1e-4)

    def test_numpy(self):
        if numpy is None:  # (the note at the top said so) numpy=True must say why it cannot
            with rgemma.Model(CASE) as m, self.assertRaises(ImportError):
                m.forward(m.new_state(), [2], numpy=True)
            return
        with rgemma.Model(CASE) as m:
            a = m.forward(m.new_state(), [2, 10, 11], all_logits=True)
            self.assertIsInstance(a, numpy.ndarray)
            self.assertEqual((a.dtype, a.shape), (numpy.float32, (3, m.vocab_size)))
            mv = m.forward(m.new_state(), [2, 10, 11], all_logits=True, numpy=False)
            self.assertTrue((a == numpy.array(mv.tolist(), dtype=numpy.float32)).all())


class StateTest(unittest.TestCase):
    def test_save_load_copy(self):
        prefix, after = [2, 5, 9, 100, 200, 300, 17, 18, 19, 20], [33, 44, 55, 66]
        with rgemma.Model(CASE) as m, tempfile.TemporaryDirectory() as d:
            s = m.new_state()
            m.forward(s, prefix)
            path = os.path.join(d, 'state.bin')
            s.save(path, pending=[7, 8])
            c = s.copy()
            loaded = m.new_state()
            self.assertEqual(loaded.load(path), [7, 8])
            self.assertEqual((c.pos, loaded.pos), (len(prefix), len(prefix)))
            other = m.new_state()
            other.copy_from(loaded)
            want = m.forward(s, after, all_logits=True, numpy=False).tolist()
            for name, st in (('copy', c), ('loaded', loaded), ('copy_from', other)):
                with self.subTest(name):
                    self.assertEqual(m.forward(st, after, all_logits=True, numpy=False).tolist(), want)
            s.reset()
            self.assertEqual(s.pos, 0)

    def test_float16_window(self):
        # states made after the switch hold float16 windows: logits close to
        # float32's (test_kv16.c bounds them on every golden case), and a
        # float32 state file is refused by a float16 state
        ids = [2, 5, 9, 100, 200, 300, 17, 18, 19, 20, 33, 44]
        with rgemma.Model(CASE) as m, tempfile.TemporaryDirectory() as d:
            self.assertEqual(m.kv_type, 'f32')
            s32 = m.new_state()
            want = m.forward(s32, ids, numpy=False).tolist()
            path = os.path.join(d, 'f32.state')
            s32.save(path)
            m.kv_type = 'f16'
            self.assertEqual(m.kv_type, 'f16')
            s16 = m.new_state()
            got = m.forward(s16, ids, numpy=False).tolist()
            self.assertLess(max(abs(a - b) for a, b in zip(want, got)), 1e-2)
            self.assertNotEqual(want, got)
            with self.assertRaisesRegex(rgemma.RgemmaError, 'f16'):
                m.new_state().load(path)
            with self.assertRaises(rgemma.RgemmaError):
                m.kv_type = 'bf16'
            self.assertEqual(m.kv_type, 'f16')

    def test_generate_continues_a_state(self):
        # 4 tokens, then 4 more from the saved state (with the pending token
        # the state has not processed) = the first 8 of one generation
        g = load_json(os.path.join(CASE, 'golden.json'))['greedy']
        with rgemma.Model(CASE) as m, tempfile.TemporaryDirectory() as d:
            first = m.generate(g['prompt'], max_tokens=4, temperature=0, ignore_eos=True)
            toks = [t.id for t in first]
            path = os.path.join(d, 's')
            first.state.save(path, pending=[first.result.next_token])
            s = m.new_state()
            pending = s.load(path)
            rest = m.generate(pending, state=s, max_tokens=4, temperature=0, ignore_eos=True)
            self.assertEqual(pending, [g['generated'][3]])
            self.assertEqual(toks + [t.id for t in rest], g['generated'][:8])


class TokenizerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.path = os.environ.get('RGEMMA_TEST_SMALL_MODEL')
        if not cls.path:
            raise RuntimeError('RGEMMA_TEST_SMALL_MODEL is not set (tests/cli/python.sh sets it)')

    def test_golden_encode_decode(self):
        tok = rgemma.Tokenizer('tests/data/tokenizer/small_bpe.model')
        n = 0
        with open('tests/data/tokenizer/small_bpe.golden.jsonl', encoding='utf-8') as f:
            for line in f:
                item = json.loads(line)
                with self.subTest(item['name']):
                    self.assertEqual(tok.encode(item['text']), item['ids'])
                    self.assertEqual(tok.decode(item['ids']), item['decoded'])
                n += 1
        self.assertGreater(n, 100)
        self.assertEqual(tok.vocab_size, 1000)
        self.assertEqual(tok.encode('Hi', add_bos=True)[0], tok.bos)
        self.assertIsNotNone(tok.piece_id('<end_of_turn>'))
        self.assertIsNone(tok.piece_id('no such piece, surely'))
        # special pieces: matched, or spelled out as text
        eot = tok.piece_id('<end_of_turn>')
        self.assertIn(eot, tok.encode('a<end_of_turn>'))
        self.assertNotIn(eot, tok.encode('a<end_of_turn>', parse_special=False))

    def test_streaming_text(self):
        with rgemma.Model(self.path) as m:
            tok = m.tokenizer
            self.assertIsNotNone(tok)
            gen = m.generate('Hello, world', max_tokens=12, temperature=0.9, seed=7, ignore_eos=True)
            pieces = list(gen)
            self.assertTrue(all(isinstance(p.text, str) for p in pieces))
            self.assertEqual(gen.result.stop_reason, 'length')
            self.assertEqual(''.join(p.text for p in pieces), tok.decode(gen.tokens))
            again = m.generate('Hello, world', max_tokens=12, temperature=0.9, seed=7, ignore_eos=True)
            self.assertEqual(again.text(), tok.decode(gen.tokens))  # same seed, same text
            # stopping early keeps what the state processed
            g3 = m.generate('Hello', max_tokens=50, temperature=0, ignore_eos=True)
            next(g3)
            g3.close()
            self.assertEqual(list(g3), [])


class ErrorTest(unittest.TestCase):
    def test_missing_model(self):
        with self.assertRaises(rgemma.RgemmaError) as cm:
            rgemma.Model('/nonexistent/folder/model-x')
        self.assertIn('/nonexistent/folder/model-x', str(cm.exception))

    def test_bad_tokens(self):
        with rgemma.Model(CASE) as m:
            s = m.new_state()
            with self.assertRaisesRegex(rgemma.RgemmaError, 'outside the vocabulary'):
                m.forward(s, [2, m.vocab_size])
            self.assertEqual(s.pos, 0)  # nothing was processed
            with self.assertRaisesRegex(rgemma.RgemmaError, 'outside the vocabulary'):
                m.forward(s, [-1])
            with self.assertRaisesRegex(rgemma.RgemmaError, 'no tokens'):
                m.forward(s, [])
            with self.assertRaisesRegex(rgemma.RgemmaError, 'outside the vocabulary'):
                m.generate([2, 99999], max_tokens=2)
            with self.assertRaisesRegex(rgemma.RgemmaError, 'empty prompt'):
                m.generate([], max_tokens=2)
            with self.assertRaises(ValueError):
                m.forward(s, [2**40])
            with self.assertRaises(TypeError):
                m.forward(s, [2, 'x'])
            with self.assertRaises(TypeError):
                m.forward(s, 'abc')
            with self.assertRaises(TypeError):
                m.forward(None, [2])

    def test_bad_generate_arguments(self):
        with rgemma.Model(CASE) as m:
            with self.assertRaisesRegex(ValueError, 'needs a tokenizer'):
                m.generate('text, but the model has no tokenizer')
            with self.assertRaisesRegex(TypeError, 'unknown parameter'):
                m.generate([2], temprature=0)
            with self.assertRaisesRegex(rgemma.RgemmaError, 'stop strings need a tokenizer'):
                m.generate([2], stop=['x'])
            with self.assertRaisesRegex(rgemma.RgemmaError, 'temperature|top_p|invalid|must'):
                list(m.generate([2], max_tokens=2, top_p=-3.0))

    def test_bad_state_files(self):
        with rgemma.Model(CASE) as m, tempfile.TemporaryDirectory() as d:
            s = m.new_state()
            missing = os.path.join(d, 'missing.state')
            with self.assertRaises(rgemma.RgemmaError) as cm:
                s.load(missing)
            self.assertIn(missing, str(cm.exception))
            junk = os.path.join(d, 'junk.state')
            with open(junk, 'wb') as f:
                f.write(b'not a state' * 10)
            with self.assertRaisesRegex(rgemma.RgemmaError, 'not an rgemma state file'):
                s.load(junk)
            with self.assertRaises(ValueError):
                s.save(os.path.join(d, 'x'), pending=[2**33])
            # a state of another config
            other_case = 'tests/data/golden/dev_3layer_w80'
            with rgemma.Model(other_case) as m2:
                s2 = m2.new_state()
                m2.forward(s2, [2, 3])
                p = os.path.join(d, 'other.state')
                s2.save(p)
                with self.assertRaises(rgemma.RgemmaError):
                    s.load(p)
                with self.assertRaises(rgemma.RgemmaError):
                    s.copy_from(s2)
            self.assertEqual(s.pos, 0)

    def test_tokenizer_of_another_vocabulary(self):
        with tempfile.TemporaryDirectory() as d:
            for f in ('config.json', 'model.safetensors'):
                os.symlink(os.path.abspath(os.path.join(CASE, f)), os.path.join(d, f))
            os.symlink(os.path.abspath('tests/data/tokenizer/small_bpe.model'), os.path.join(d, 'tokenizer.model'))
            with rgemma.Model(d) as m:
                for _ in range(2):  # refused each time, not only the first
                    with self.assertRaisesRegex(rgemma.RgemmaError, '1000'):
                        m.tokenizer

    def test_bad_tokenizer(self):
        with self.assertRaises(rgemma.RgemmaError) as cm:
            rgemma.Tokenizer('/nonexistent/tokenizer.model')
        self.assertIn('/nonexistent/tokenizer.model', str(cm.exception))
        tok = rgemma.Tokenizer('tests/data/tokenizer/small_bpe.model')
        with self.assertRaisesRegex(rgemma.RgemmaError, 'out of range'):
            tok.decode([5, 100000])
        tok.close()
        with self.assertRaises(ValueError):
            tok.encode('closed')


class LibraryTest(unittest.TestCase):
    def test_version(self):
        self.assertRegex(rgemma.version(), r'^\d+\.\d+\.\d+$')
        self.assertEqual(tuple(int(x) for x in rgemma.version().split('.')[:2]), _lib.ABI)

    def test_struct_layouts(self):
        path = os.environ.get('RGEMMA_TEST_ABI')
        if not path:
            raise RuntimeError('RGEMMA_TEST_ABI is not set (tests/cli/python.sh sets it)')
        n = 0
        with open(path) as f:
            for line in f:
                name, value = line.split()
                struct, _, field = name.partition('.')
                t = getattr(_lib, struct)
                got = getattr(t, field).offset if field else ctypes.sizeof(t)
                self.assertEqual(got, int(value), name)
                n += 1
        self.assertGreater(n, 10)


if __name__ == '__main__':
    unittest.main()
