/* tests/train/test_train_mutations.c - the three readers of train/ fed
 * damaged input: checkpoint files, PEFT adapter_config.json and JSONL
 * training data. From one valid input each, seeded mutations (bit flips,
 * byte overwrites, truncations, insertions, splices of JSON punctuation)
 * must give LOOM_OK or an error status with a message, never a crash (run it
 * under ASan/UBSan: the sanitizer build does). A mutated checkpoint must
 * never load (the checksum covers every byte), and a clean one always. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom/loom.h"
#include "testing.h"
#include "train/checkpoint.h"
#include "train/finetune_data.h"
#include "train/peft.h"
#include "train_fixture.h"

#define ROUNDS 300

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (uint32_t)(rs >> 16);
}

static char dir[64];

static void put(const char *name, const void *d, size_t n) {
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (n) fwrite(d, 1, n, f);
    fclose(f);
}

static unsigned char *get(const char *name, size_t *n) {
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *d = malloc(*n + 1);
    *n = fread(d, 1, *n, f);
    fclose(f);
    return d;
}

/* One mutation of src (n bytes) into a new buffer; *m its size. */
static unsigned char *mutate(const unsigned char *src, size_t n, size_t *m) {
    static const char punct[] = "{}[]\":,\\ 0-9e.truefalsenull\n";
    unsigned char *d = malloc(n + 64);
    memcpy(d, src, n);
    *m = n;
    int k = 1 + (int)(rnd() % 4);
    for (int i = 0; i<k && * m> 0; i++) {
        size_t at = rnd() % *m;
        switch (rnd() % 5) {
        case 0:
            d[at] ^= (unsigned char)(1u << (rnd() % 8));
            break;
        case 1:
            d[at] = (unsigned char)rnd();
            break;
        case 2:
            *m = at;
            break; /* truncate */
        case 3:
            if (*m < n + 60) {
                memmove(d + at + 1, d + at, *m - at);
                d[at] = (unsigned char)punct[rnd() % (sizeof punct - 1)];
                (*m)++;
            }
            break;
        default:
            d[at] = (unsigned char)punct[rnd() % (sizeof punct - 1)];
            break;
        }
    }
    return d;
}

static loom_model_config tiny_config(void) {
    loom_model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.arch, sizeof c.arch, "llama");
    c.vocab_size = 261;
    c.dim = 32;
    c.n_layers = 2;
    c.n_heads = 2;
    c.n_kv_heads = 1;
    c.head_dim = 16;
    c.ffn_dim = 64;
    c.rms_eps = 1e-5f;
    c.rope = loom_rope_params_llama3(16);
    c.rope.mode = LOOM_ROPE_NORMAL;
    c.max_ctx = 64;
    c.bos_id = 256;
    c.eos_id = 257;
    c.eot_id = 258;
    return c;
}

static void test_checkpoint(void) {
    loom_model_config mc = tiny_config();
    loom_lora_config lc = {.r = 2, .alpha = 4, .dropout = 0.1f, .targets = LOOM_LORA_ALL_TARGETS};
    loom_lora *lo;
    char err[1024];
    CHECK(loom_lora_new(&mc, &lc, 1, &lo, err, sizeof err) == LOOM_OK);
    int64_t *sz = malloc((size_t)lo->n_params * sizeof *sz);
    for (int i = 0; i < lo->n_params; i++)
        sz[i] = lo->p[i].rows * lo->p[i].cols;
    loom_adamw_params hp = loom_adamw_default_params();
    loom_optim *o;
    CHECK(loom_adamw_new(&hp, lo->n_params, sz, &o) == LOOM_OK);
    loom_ckpt_state s = {.step = 5, .epoch = 1, .cursor = 2, .rng = {1, 2, 3, 4}, .seed = 9};
    char path[128];
    snprintf(path, sizeof path, "%s/ck.bin", dir);
    CHECK(loom_checkpoint_save(path, &s, lo, o, err, sizeof err) == LOOM_OK);
    size_t n;
    unsigned char *good = get("ck.bin", &n);
    loom_ckpt_state r;
    CHECK(loom_checkpoint_load(path, &r, lo, o, err, sizeof err) == LOOM_OK && r.step == 5 &&
          r.cursor == 2 && r.rng[3] == 4);
    int loaded = 0;
    for (int i = 0; i < ROUNDS; i++) {
        size_t m;
        unsigned char *d = mutate(good, n, &m);
        put("ck.bin", d, m);
        err[0] = 0;
        loom_status st = loom_checkpoint_load(path, &r, lo, o, err, sizeof err);
        bool same = m == n && memcmp(d, good, n) == 0;
        if (st == LOOM_OK) loaded++;
        CHECK_MSG((st == LOOM_OK) == same, "round %d: mutated checkpoint status %d", i, st);
        CHECK_MSG(st == LOOM_OK || err[0], "round %d: error without a message", i);
        free(d);
    }
    printf("checkpoint: %d mutations, %d identical inputs loaded\n", ROUNDS, loaded);
    free(good);
    free(sz);
    loom_optim_free(o);
    loom_lora_free(lo);
}

static void test_adapter_config(void) {
    loom_model_config mc = tiny_config();
    loom_lora_config lc = {.r = 2, .alpha = 4, .dropout = 0, .targets = LOOM_LORA_ALL_TARGETS};
    loom_lora *lo, *back = NULL;
    char err[1024];
    CHECK(loom_lora_new(&mc, &lc, 1, &lo, err, sizeof err) == LOOM_OK);
    CHECK(loom_peft_save(dir, lo, "base", err, sizeof err) == LOOM_OK);
    size_t n;
    unsigned char *good = get("adapter_config.json", &n);
    int ok = 0;
    for (int i = 0; i < ROUNDS; i++) {
        size_t m;
        unsigned char *d = mutate(good, n, &m);
        put("adapter_config.json", d, m);
        err[0] = 0;
        loom_status st = loom_peft_load(dir, &mc, &back, err, sizeof err);
        if (st == LOOM_OK) {
            ok++;
            CHECK(back && back->cfg.r >= 1 && back->cfg.alpha > 0);
            loom_lora_free(back);
            back = NULL;
        } else {
            CHECK_MSG(err[0] && !back, "round %d: error without a message", i);
        }
        free(d);
    }
    printf("adapter_config.json: %d mutations, %d still valid\n", ROUNDS, ok);
    free(good);
    loom_lora_free(lo);
}

static void test_jsonl(void) {
    loom_tokenizer *tok = byte_tokenizer();
    const char *good =
        "{\"text\": \"hello world\"}\n"
        "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", "
        "\"content\": \"q?\"}, {\"role\": \"assistant\", \"content\": \"a.\"}]}\n";
    char path[128], err[1024];
    snprintf(path, sizeof path, "%s/d.jsonl", dir);
    int ok = 0;
    for (int i = 0; i < ROUNDS; i++) {
        size_t m;
        unsigned char *d = mutate((const unsigned char *)good, strlen(good), &m);
        put("d.jsonl", d, m);
        loom_ft_dataset ds;
        err[0] = 0;
        loom_status st = loom_ft_dataset_load(path, tok, 32, &ds, err, sizeof err);
        if (st == LOOM_OK) {
            ok++;
            for (int64_t e = 0; e < ds.n; e++)
                CHECK(ds.ex[e].n >= 2 && ds.ex[e].n <= 32);
            loom_ft_dataset_free(&ds);
        } else {
            CHECK_MSG(strstr(err, "d.jsonl:") != NULL, "round %d: message '%s'", i, err);
        }
        free(d);
    }
    printf("jsonl: %d mutations, %d still valid\n", ROUNDS, ok);
    loom_tokenizer_free(tok);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/loom_trainmut_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    test_checkpoint();
    test_adapter_config();
    test_jsonl();
    const char *files[] = {"ck.bin", "adapter_config.json", "adapter_model.safetensors", "d.jsonl"};
    for (int i = 0; i < 4; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
    return test_summary("test_train_mutations");
}
