/* Training (src/train/trainer.c, data.c): which ids a chat counts, the
 * document layout, JSONL errors with FILE:LINE, the loss falling on a
 * repetitive text, the same weights on 1 and 2 threads and after a resume,
 * also with the activations recomputed, from-scratch weights = rg_synth's,
 * a LoRA run (its adapters, merged and applied at load), and runs refused
 * before anything is written. Model: 3 layers of width 64 over small_bpe.model (1000 pieces,
 * with <start_of_turn> / <end_of_turn>). */
#include <math.h>
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include "model/model.h"
#include "model/synth.h"
#include "train/train.h"
#include "util/util.h"

#define TOKENIZER "tests/data/tokenizer/small_bpe.model"

static char tmp_root[] = "/tmp/rgemma-test-train-XXXXXX";
static rg_tokenizer *tok;

static int setup(void **state) {
    (void)state;
    if (!mkdtemp(tmp_root)) return -1;
    return rg_tokenizer_load(TOKENIZER, &tok);
}

static int teardown(void **state) {
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    rg_tokenizer_free(tok);
    return system(cmd);
}

static char *write_file(const char *name, const char *text) {
    char *path = rg_path_join(tmp_root, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static rg_config small_config(void) {
    rg_config c;
    rg_synth_preset("tiny", &c);
    c.vocab_size = 1000;
    c.hidden_size = c.lru_width = 64;
    c.num_heads = 4;
    c.head_dim = 16;
    c.mlp_width = 128;
    c.window = 32;
    c.embed_scale = rg_bf16_to_f32(rg_f32_to_bf16(8.0f));
    return c;
}

static void append_ids(int32_t *out, size_t *n, const char *text) {
    int32_t *ids;
    size_t k;
    assert_int_equal(rg_tokenize_ex(tok, text, strlen(text), 0, 0, 0, &ids, &k), 0);
    memcpy(out + *n, ids, k * sizeof *ids);
    *n += k;
    free(ids);
}

/* The whole layout of one chat: turn markers by id, system folded into the
 * user turn, and counted exactly the model's text and its <end_of_turn>. */
static void test_chat_counts_model_turns(void **state) {
    (void)state;
    char *path = write_file("chat.jsonl",
                            "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
                            " {\"role\": \"user\", \"content\": \"Hello there\"},"
                            " {\"role\": \"assistant\", \"content\": \"General Kenobi\"},"
                            " {\"role\": \"user\", \"content\": \"Bye\"},"
                            " {\"role\": \"model\", \"content\": \"Farewell\"}]}\n");
    rg_train_stream s = {0};
    assert_int_equal(rg_train_stream_add_file(&s, tok, path), 0);
    int32_t sot = rg_tokenizer_piece_id(tok, "<start_of_turn>"), eot = rg_tokenizer_piece_id(tok, "<end_of_turn>");
    int32_t want[256];
    uint8_t counted[256] = {0};
    size_t n = 0, from;
    want[n++] = rg_tokenizer_bos(tok);
    want[n++] = sot;
    append_ids(want, &n, "user\nBe brief.\n\nHello there");
    want[n++] = eot;
    append_ids(want, &n, "\n");
    want[n++] = sot;
    append_ids(want, &n, "model\n");
    from = n;
    append_ids(want, &n, "General Kenobi");
    want[n++] = eot;
    memset(counted + from, 1, n - from);
    append_ids(want, &n, "\n");
    want[n++] = sot;
    append_ids(want, &n, "user\nBye");
    want[n++] = eot;
    append_ids(want, &n, "\n");
    want[n++] = sot;
    append_ids(want, &n, "model\n");
    from = n;
    append_ids(want, &n, "Farewell");
    want[n++] = eot;
    memset(counted + from, 1, n - from);
    append_ids(want, &n, "\n");
    assert_int_equal(s.n, n);
    assert_int_equal(s.n_docs, 1);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(s.ids[i], want[i]);
        assert_int_equal(s.counts[i], counted[i]);
    }
    rg_train_stream_free(&s);
    free(path);
}

/* A document is BOS text EOS with every id but BOS counted; a plain file is
 * one document, a JSONL "text" line another. */
static void test_documents(void **state) {
    (void)state;
    char *txt = write_file("doc.txt", "Hello world"), *jl = write_file("doc.jsonl", "\n{\"text\": \"Hello world\"}\n\n");
    rg_train_stream s = {0};
    assert_int_equal(rg_train_stream_add_file(&s, tok, txt), 0);
    assert_int_equal(rg_train_stream_add_file(&s, tok, jl), 0);
    assert_int_equal(s.n_docs, 2);
    assert_int_equal(s.n % 2, 0);
    size_t half = s.n / 2;
    assert_memory_equal(s.ids, s.ids + half, half * sizeof *s.ids);
    assert_int_equal(s.ids[0], rg_tokenizer_bos(tok));
    assert_int_equal(s.counts[0], 0);
    assert_int_equal(s.ids[half - 1], rg_tokenizer_eos(tok));
    for (size_t i = 1; i < half; i++) assert_int_equal(s.counts[i], 1);
    rg_train_stream_free(&s);
    free(txt);
    free(jl);
}

/* Bad JSONL lines fail with FILE:LINE and what is wrong. */
static void test_bad_jsonl(void **state) {
    (void)state;
    static const struct {
        const char *text, *what;
    } cases[] = {
        {"{\"text\": \"ok\"}\n{\"text\": \"cut", ":2: not a JSON object"},
        {"{\"text\": 5}", ":1: \"text\" must be a string"},
        {"\n\n[1, 2]", ":3: not a JSON object"},
        {"{\"prompt\": \"x\"}", ":1: expected a \"text\" or a \"messages\" key"},
        {"{\"messages\": []}", ":1: \"messages\" must be a non-empty list"},
        {"{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}", ":1: messages[0]: role \"robot\""},
        {"{\"messages\": [{\"role\": \"user\"}]}", ":1: messages[0] must be an object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = write_file("bad.jsonl", cases[i].text);
        rg_train_stream s = {0};
        assert_int_equal(rg_train_stream_add_file(&s, tok, path), -1);
        if (!strstr(rg_last_error(), cases[i].what) || !strstr(rg_last_error(), path))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, rg_last_error(), cases[i].what);
        rg_train_stream_free(&s);
        free(path);
    }
}

static char *repetitive_text(void) {
    static const char line[] = "The quick brown fox jumps over the lazy dog. ";
    size_t n = sizeof line - 1;
    char *text = rg_xmalloc(n * 60 + 1);
    for (int i = 0; i < 60; i++) memcpy(text + i * n, line, n);
    text[n * 60] = 0;
    return text;
}

static void small_run(rg_train_params *p, const rg_config *c, const char *const *data, const char *out) {
    rg_train_params_default(p);
    p->config = c;
    p->tokenizer_path = TOKENIZER;
    p->data_files = data;
    p->n_data_files = 1;
    p->out_dir = out;
    p->ctx = 32;
    p->batch = 2;
    p->steps = 8;
    p->lr = 3e-3;
    p->min_lr = 3e-4;
    p->warmup = 2;
    p->eval_frac = 0.1;
    p->eval_every = 0;
}

static char *read_all(const char *dir, const char *name, size_t *len) {
    char *path = rg_path_join(dir, name), *data;
    assert_int_equal(rg_read_file(path, 1 << 26, &data, len), 0);
    free(path);
    return data;
}

/* The loss falls; 1 and 2 threads, 4 + 4 steps with a resume, and the
 * activations recomputed in the backward pass give the same bytes. */
static void test_train_resume_threads(void **state) {
    (void)state;
    char *text = repetitive_text(), *data = write_file("rep.txt", text);
    const char *files[] = {data};
    rg_config c = small_config();
    char *one = rg_path_join(tmp_root, "one"), *two = rg_path_join(tmp_root, "two"), *split = rg_path_join(tmp_root, "split");
    char *recomputed = rg_path_join(tmp_root, "recomputed");
    rg_train_params p;
    rg_train_result r;
    int threads = omp_get_max_threads();

    small_run(&p, &c, files, one);
    p.steps = 0; /* refused: nothing written */
    assert_int_equal(rg_train(&p, &r), -1);
    assert_false(rg_is_dir(one));

    small_run(&p, &c, files, one);
    rg_set_threads(1);
    assert_int_equal(rg_train(&p, &r), 0);
    assert_int_equal(r.steps_done, 8);
    assert_false(r.stopped);
    assert_true(r.eval_loss < 6.0); /* from about 14 */
    assert_true(r.train_loss < 6.0);

    small_run(&p, &c, files, two);
    rg_set_threads(2);
    assert_int_equal(rg_train(&p, &r), 0);

    small_run(&p, &c, files, recomputed);
    p.checkpoint_activations = 1;
    assert_int_equal(rg_train(&p, &r), 0);

    small_run(&p, &c, files, split);
    p.stop_after = 4;
    assert_int_equal(rg_train(&p, &r), 0);
    assert_true(r.stopped);
    assert_int_equal(r.steps_done, 4);
    p.stop_after = 0;
    p.resume = 1;
    rg_set_threads(1);
    assert_int_equal(rg_train(&p, &r), 0);
    assert_int_equal(r.steps_done, 8);
    rg_set_threads(threads);

    size_t la, lb, lc, ld;
    char *a = read_all(one, "model.safetensors", &la), *b = read_all(two, "model.safetensors", &lb);
    char *s = read_all(split, "model.safetensors", &lc), *rc = read_all(recomputed, "model.safetensors", &ld);
    assert_int_equal(la, lb);
    assert_int_equal(la, lc);
    assert_int_equal(la, ld);
    assert_memory_equal(a, b, la);
    assert_memory_equal(a, s, la);
    assert_memory_equal(a, rc, la);
    free(a);
    free(b);
    free(s);
    free(rc);

    /* another run's optimizer.bin is refused, and the checkpoint stays */
    small_run(&p, &c, files, one);
    p.seed = 2;
    p.resume = 1;
    assert_int_equal(rg_train(&p, &r), -1);
    assert_non_null(strstr(rg_last_error(), "another run"));

    free(one);
    free(two);
    free(split);
    free(recomputed);
    free(data);
    free(text);
}

/* rg_synth_tensor_values gives the weights rg_synth writes (same seed); a
 * run from scratch starts from rg_synth_training_values: the same matrices'
 * shapes of distribution, but biases and norms zero and a smaller embedding. */
static void test_initial_weights(void **state) {
    (void)state;
    rg_config c = small_config();
    char *dir = rg_path_join(tmp_root, "synth");
    rg_synth_options o = {.dtype = RG_DT_F32, .seed = 7};
    assert_int_equal(rg_synth_write(&c, dir, &o, NULL), 0);
    rg_model *m;
    assert_int_equal(rg_model_load(dir, &m), 0);
    rg_grad *g = rg_grad_new(&c);
    size_t n = rg_grad_size(g);
    float *from_file = rg_xmalloc(sizeof(float) * n), *values = rg_xmalloc(sizeof(float) * n);
    assert_int_equal(rg_grad_params_from_model(g, m, from_file), 0);
    for (int k = 0; k < rg_grad_n_tensors(g); k++) {
        const rg_grad_tensor *t = rg_grad_tensor_at(g, k);
        assert_int_equal(rg_synth_tensor_values(&c, 7, t->name, values + t->offset, (int64_t)t->count), 0);
    }
    assert_memory_equal(from_file, values, sizeof(float) * n);
    assert_int_equal(rg_synth_tensor_values(&c, 7, "model.no_such.weight", values, 1), -1);
    for (int k = 0; k < rg_grad_n_tensors(g); k++) {
        const rg_grad_tensor *t = rg_grad_tensor_at(g, k);
        float *v = values + t->offset;
        assert_int_equal(rg_synth_training_values(&c, 7, t->name, v, (int64_t)t->count), 0);
        double ss = 0;
        for (size_t i = 0; i < t->count; i++) ss += (double)v[i] * v[i];
        int zero = strstr(t->name, "bias") || strstr(t->name, "norm");
        if (zero) assert_true(ss == 0);
        else assert_true(ss > 0);
        if (!strcmp(t->name, "model.embed_tokens.weight")) /* N(0, 1/D): mean square 1/D */
            assert_true(fabs(ss / (double)t->count * (double)c.hidden_size - 1.0) < 0.1);
    }
    assert_int_equal(rg_synth_training_values(&c, 7, "model.no_such.weight", values, 1), -1);
    free(from_file);
    free(values);
    rg_grad_free(g);
    rg_model_free(m);
    free(dir);
}

static void logits_of(rg_model *m, float *logits) {
    int32_t tokens[12];
    for (int i = 0; i < 12; i++) tokens[i] = (int32_t)(i * 37 % 1000);
    rg_state *st = rg_state_new(m);
    assert_int_equal(rg_forward(m, st, tokens, 12, logits, 1), 0);
    rg_state_free(st);
}

/* A base checkpoint synthesised in dt, then a LoRA run (rank 4) on it
 * merged into out; the run learned (eval loss from about 13). */
static void lora_merged_run(rg_train_params *p, const rg_config *c, rg_dtype dt, uint64_t seed,
                            const char *const *files, const char *base, const char *out) {
    rg_synth_options o = {.dtype = dt, .seed = seed};
    assert_int_equal(rg_synth_write(c, base, &o, NULL), 0);
    rg_train_result r;
    small_run(p, c, files, out);
    p->config = NULL;
    p->model_path = base;
    p->lora_rank = 4;
    p->lr = 1e-2;
    p->lora_merge = 1;
    assert_int_equal(rg_train(p, &r), 0);
    assert_true(r.eval_loss < 11.0);
}

/* The merged checkpoint differs from the base in the adapted matrices (the
 * layers' 2-D weights) and in nothing else, the embedding included. */
static void assert_only_adapted_changed(const rg_config *c, const char *base, const char *merged) {
    rg_model *m0, *m1;
    assert_int_equal(rg_model_load(base, &m0), 0);
    assert_int_equal(rg_model_load(merged, &m1), 0);
    rg_grad *g = rg_grad_new(c);
    size_t n = rg_grad_size(g);
    float *w0 = rg_xmalloc(sizeof(float) * n), *w1 = rg_xmalloc(sizeof(float) * n);
    assert_int_equal(rg_grad_params_from_model(g, m0, w0), 0);
    assert_int_equal(rg_grad_params_from_model(g, m1, w1), 0);
    for (int k = 0; k < rg_grad_n_tensors(g); k++) {
        const rg_grad_tensor *t = rg_grad_tensor_at(g, k);
        int adapted = t->ndim == 2 && !strstr(t->name, "bias") && strcmp(t->name, "model.embed_tokens.weight");
        int same = !memcmp(w0 + t->offset, w1 + t->offset, sizeof(float) * t->count);
        if (same == adapted) fail_msg("%s: %s", t->name, adapted ? "not trained" : "changed");
    }
    free(w0), free(w1);
    rg_grad_free(g);
    rg_model_free(m0);
    rg_model_free(m1);
}

/* A LoRA run trains only the adapters: the merged checkpoint (lora_merge)
 * differs from the base in the adapted matrices only and the loss falls;
 * recomputing the activations changes no bit of the adapters; the adapter
 * file holds A and B alone, and applied at load (rg_model_apply_lora) it
 * gives the merged checkpoint's logits bit for bit; an adapter of another
 * shape is refused, naming the file and tensor. */
static void test_lora_run(void **state) {
    (void)state;
    char *text = repetitive_text(), *data = write_file("rep_lora.txt", text);
    const char *files[] = {data};
    rg_config c = small_config();
    char *base = rg_path_join(tmp_root, "lora-base"), *out = rg_path_join(tmp_root, "lora");
    char *out2 = rg_path_join(tmp_root, "lora-recomputed"), *other = rg_path_join(tmp_root, "lora-other");
    rg_synth_options o = {.dtype = RG_DT_F32, .seed = 3};
    rg_train_params p;
    rg_train_result r;
    lora_merged_run(&p, &c, RG_DT_F32, 3, files, base, out);
    p.out_dir = out2;
    p.lora_merge = 0;
    p.checkpoint_activations = 1;
    assert_int_equal(rg_train(&p, &r), 0);
    char *merged_file = rg_path_join(out2, "model.safetensors");
    assert_false(rg_file_exists(merged_file));
    free(merged_file);
    size_t la, lb;
    char *a = read_all(out, "adapter_model.safetensors", &la), *b = read_all(out2, "adapter_model.safetensors", &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    assert_true(la < 64 * 1024); /* 19 pairs of rank 4, not the model */
    free(a), free(b);

    assert_only_adapted_changed(&c, base, out);
    rg_model *m1, *m2;
    assert_int_equal(rg_model_load(out, &m1), 0);
    size_t nl = (size_t)12 * c.vocab_size;
    float *l1 = rg_xmalloc(sizeof(float) * nl), *l2 = rg_xmalloc(sizeof(float) * nl);
    assert_int_equal(rg_model_load(base, &m2), 0);
    uint64_t plain = rg_model_fingerprint(m2);
    assert_int_equal(rg_model_apply_lora(m2, out2), 0);
    /* the state store keys states by it: an adapted model is another model */
    assert_true(rg_model_fingerprint(m2) != plain);
    logits_of(m1, l1);
    logits_of(m2, l2);
    assert_memory_equal(l1, l2, sizeof(float) * nl);
    rg_model_free(m2);
    /* PEFT's rsLoRA scale alpha / sqrt(r): alpha 2 at rank 4 is the run's s = 4 / 4 */
    char *rs = rg_path_join(tmp_root, "lora-rs"), *from = rg_path_join(out2, "adapter_model.safetensors");
    char *to = rg_path_join(rs, "adapter_model.safetensors");
    size_t len;
    char *bytes;
    assert_int_equal(rg_make_dirs(rs), 0);
    assert_int_equal(rg_read_file(from, 1 << 26, &bytes, &len), 0);
    FILE *f = fopen(to, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    fclose(f);
    free(write_file("lora-rs/adapter_config.json", "{\"r\": 4, \"lora_alpha\": 2, \"use_rslora\": true}"));
    assert_int_equal(rg_model_load(base, &m2), 0);
    assert_int_equal(rg_model_apply_lora(m2, to), 0);
    logits_of(m2, l2);
    assert_memory_equal(l1, l2, sizeof(float) * nl);
    rg_model_free(m2);
    free(rs), free(from), free(to), free(bytes);

    rg_config c2 = c;
    c2.mlp_width = 96;
    assert_int_equal(rg_synth_write(&c2, other, &o, NULL), 0);
    assert_int_equal(rg_model_load(other, &m2), 0);
    assert_int_equal(rg_model_apply_lora(m2, out2), -1);
    assert_non_null(strstr(rg_last_error(), "adapter_model.safetensors"));
    assert_non_null(strstr(rg_last_error(), "mlp_block.gate_proj.lora_A.weight"));
    rg_model_free(m2);
    free(l1), free(l2);
    rg_model_free(m1);
    free(base), free(out), free(out2), free(other), free(data), free(text);
}

/* LoRA on a bf16 checkpoint keeps its adapted matrices and its embedding in
 * bf16 (the gradient engine widens them as it reads them): the merged
 * checkpoint has the base's embedding and unadapted tensors exactly, the
 * adapted ones changed, and the run learned. */
static void test_lora_bf16_base(void **state) {
    (void)state;
    char *text = repetitive_text(), *data = write_file("rep_lora16.txt", text);
    const char *files[] = {data};
    rg_config c = small_config();
    char *base = rg_path_join(tmp_root, "lora16-base"), *out = rg_path_join(tmp_root, "lora16");
    rg_train_params p;
    lora_merged_run(&p, &c, RG_DT_BF16, 5, files, base, out);
    assert_only_adapted_changed(&c, base, out);
    free(base), free(out), free(data), free(text);
}

/* Inputs the run cannot use fail first, with nothing written. */
static void test_refused(void **state) {
    (void)state;
    char *tiny = write_file("tiny.txt", "Too short."), *data = write_file("ok.txt", "Some text of a few tokens.");
    char *other = rg_path_join(tmp_root, "other"), *out = rg_path_join(tmp_root, "refused");
    rg_config c = small_config();
    rg_train_params p;
    rg_train_result r;
    const char *short_files[] = {tiny}, *files[] = {data};

    small_run(&p, &c, short_files, out);
    p.ctx = 64;
    assert_int_equal(rg_train(&p, &r), -1);
    assert_non_null(strstr(rg_last_error(), "fewer than one sequence of ctx 64"));

    rg_config small_vocab = c;
    small_vocab.vocab_size = 500;
    small_run(&p, &small_vocab, files, out);
    p.ctx = 4;
    assert_int_equal(rg_train(&p, &r), -1);
    assert_non_null(strstr(rg_last_error(), "vocab_size is 500"));

    small_run(&p, &c, files, out);
    p.ctx = 4;
    p.resume = 1;
    assert_int_equal(rg_train(&p, &r), -1);
    assert_non_null(strstr(rg_last_error(), "no checkpoint to resume"));

    assert_int_equal(rg_make_dirs(other), 0);
    free(write_file("other/notes.txt", "mine"));
    small_run(&p, &c, files, other);
    p.ctx = 4;
    assert_int_equal(rg_train(&p, &r), -1);
    assert_non_null(strstr(rg_last_error(), "holds other files"));
    assert_false(rg_is_dir(out));
    free(tiny);
    free(data);
    free(other);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_counts_model_turns),
        cmocka_unit_test(test_documents),
        cmocka_unit_test(test_bad_jsonl),
        cmocka_unit_test(test_train_resume_threads),
        cmocka_unit_test(test_initial_weights),
        cmocka_unit_test(test_lora_run),
        cmocka_unit_test(test_lora_bf16_base),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
