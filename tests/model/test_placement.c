/* tests/model/test_placement.c - the layer-split plan (loom/placement.h,
 * docs/adr/0030) from sizes alone, against plans worked out by hand:
 * --gpu-layers N (the last N layers off the cpu, head with them, embedding
 * with layer 0 or, tied, with the head), auto under a memory budget (layers
 * first, then the head; the margin is free/16), a plan that does not fit
 * (why, and the largest --gpu-layers that does), --tensor-split over three
 * devices, two devices without shares (by free memory), bad inputs, the
 * words of the one-line plan, and the --devices syntax. */
#include <stdio.h>
#include <string.h>

#include "fuzz/fuzz_split_devices.c" /* LLVMFuzzerTestOneInput: aborts on a broken invariant */
#include "loom/placement.h"
#include "testing.h"

#define L 8
static size_t g_layer[L];

/* 8 layers of 100 bytes, KV 10 per layer, act 50, logits 20, embd 80,
 * head 80; device 0 "vulkan" with free bytes, device 1 the cpu. */
static loom_split_input input(size_t free, int gpu_layers, bool tied) {
    loom_split_input in;
    memset(&in, 0, sizeof in);
    for (int i = 0; i < L; i++)
        g_layer[i] = 100;
    in.n_layers = L;
    in.layer_bytes = g_layer;
    in.kv_layer_bytes = 10;
    in.act_bytes = 50;
    in.logits_bytes = 20;
    in.embd_bytes = 80;
    in.head_bytes = tied ? 4 : 80;
    in.tied = tied;
    in.gpu_layers = gpu_layers;
    in.n_devices = 2;
    snprintf(in.dev[0].name, sizeof in.dev[0].name, "vulkan");
    in.dev[0].mem_free = free;
    snprintf(in.dev[1].name, sizeof in.dev[1].name, "cpu");
    in.dev[1].cpu = true;
    return in;
}

static void test_gpu_layers(void) {
    loom_split_plan p;
    char err[256];
    loom_split_input in = input(0, 3, false); /* unknown free memory: no limit */
    CHECK(loom_split_plan_make(&in, &p, err, sizeof err) == LOOM_OK);
    CHECK(p.fits && p.n_gpu_layers == 3);
    CHECK(p.first[1] == 0 && p.count[1] == 5 && p.first[0] == 5 && p.count[0] == 3);
    CHECK(p.head_dev == 0 && p.embd_dev == 1);
    CHECK(loom_split_plan_layer_device(&p, 4) == 1 && loom_split_plan_layer_device(&p, 5) == 0);
    CHECK(loom_split_plan_layer_device(&p, 8) == -1 && loom_split_plan_layer_device(&p, -1) == -1);
    /* vulkan: 3 layers + KV + act + head + logits; cpu: 5 layers + KV + act + embd */
    CHECK(p.need_bytes[0] == 300 + 30 + 50 + 80 + 20);
    CHECK(p.need_bytes[1] == 500 + 50 + 50 + 80);
    char line[512];
    loom_split_plan_describe(&p, true, line, sizeof line);
    CHECK_MSG(strstr(line, "vulkan layers 5-7 + head") && strstr(line, "cpu layers 0-4 + embd") &&
                  strstr(line, "3 of 8 layers off the cpu") && !strstr(line, "NOT FIT"),
              "%s", line);
    /* Tied: the embedding is the head's matrix, so it goes with the head. */
    in = input(0, 3, true);
    CHECK(loom_split_plan_make(&in, &p, err, sizeof err) == LOOM_OK);
    CHECK(p.head_dev == 0 && p.embd_dev == 0 && p.need_bytes[0] == 300 + 30 + 50 + 80 + 4 + 20);
    /* 0 layers: everything on the cpu (no head on an idle device). */
    in = input(0, 0, false);
    CHECK(loom_split_plan_make(&in, &p, err, sizeof err) == LOOM_OK);
    CHECK(p.n_gpu_layers == 0 && p.head_dev == 1 && p.embd_dev == 1 && p.need_bytes[0] == 0);
    /* More than there are: clamped (-ngl 99). */
    in = input(0, 99, false);
    CHECK(loom_split_plan_make(&in, &p, err, sizeof err) == LOOM_OK);
    CHECK(p.n_gpu_layers == L && p.count[1] == 0 && p.embd_dev == 0 && p.head_dev == 0);
    /* Only the cpu: nothing goes off it, whatever was asked. */
    in = input(0, 5, false);
    in.dev[0] = in.dev[1];
    in.n_devices = 1;
    CHECK(loom_split_plan_make(&in, &p, err, sizeof err) == LOOM_OK);
    CHECK(p.n_gpu_layers == 0 && p.count[0] == L && p.head_dev == 0 && p.fits);
    in.gpu_layers = LOOM_GPU_LAYERS_AUTO;
    CHECK(loom_split_plan_make(&in, &p, err, sizeof err) == LOOM_OK);
    CHECK(p.n_gpu_layers == 0 && p.count[0] == L);
}

static void test_auto(void) {
    loom_split_plan p;
    char err[256];
    /* free 800: budget 800 - 50 = 750. 6 layers + head: 660 + 50 + 80 + 20
     * = 810 > 750; 6 layers without: 710 fits; 7 without: 820 does not. */
    loom_split_input in = input(800, LOOM_GPU_LAYERS_AUTO, false);
    CHECK(loom_split_plan_make(&in, &p, err, sizeof err) == LOOM_OK);
    CHECK_MSG(p.fits && p.n_gpu_layers == 6 && p.head_dev == 1 && p.max_fitting == 6,
              "fits %d n %d head %d max %d", p.fits, p.n_gpu_layers, p.head_dev, p.max_fitting);
    CHECK(p.budget[0] == 750 && p.margin[0] == 50 && p.need_bytes[0] == 710);
    /* free 1184: budget 1110 = all 8 layers + KV + embd + head + act + logits. */
    in = input(1184, LOOM_GPU_LAYERS_AUTO, false);
    CHECK(loom_split_plan_make(&in, &p, err, sizeof err) == LOOM_OK);
    CHECK_MSG(p.n_gpu_layers == L && p.head_dev == 0 && p.embd_dev == 0 && p.need_bytes[0] == 1110,
              "n %d need %zu", p.n_gpu_layers, p.need_bytes[0]);
    in = input(1182, LOOM_GPU_LAYERS_AUTO,
               false); /* budget 1109, one byte short: the head stays behind */
    CHECK(loom_split_plan_make(&in, &p, err, sizeof err) == LOOM_OK);
    CHECK(p.n_gpu_layers == L && p.head_dev == 1);
    /* Not even the activations fit: all on the cpu. */
    in = input(40, LOOM_GPU_LAYERS_AUTO, false);
    CHECK(loom_split_plan_make(&in, &p, err, sizeof err) == LOOM_OK);
    CHECK(p.n_gpu_layers == 0 && p.fits && p.head_dev == 1);
}

static void test_does_not_fit(void) {
    loom_split_plan p;
    char err[256];
    loom_split_input in = input(800, 8, false);
    CHECK(loom_split_plan_make(&in, &p, err, sizeof err) == LOOM_OK);
    CHECK(!p.fits && p.n_gpu_layers == 8 && p.max_fitting == 6);
    CHECK_MSG(strstr(p.why, "vulkan needs") && strstr(p.why, "--gpu-layers 6"), "%s", p.why);
    char table[2048];
    loom_split_plan_describe(&p, false, table, sizeof table);
    CHECK_MSG(strstr(table, "fits: NO") && strstr(table, "at most 6 fit"), "%s", table);
    /* Fits without the head: the head goes back to the cpu. */
    in = input(800, 6, false);
    CHECK(loom_split_plan_make(&in, &p, err, sizeof err) == LOOM_OK);
    CHECK(p.fits && p.head_dev == 1);
}

static void test_shares(void) {
    loom_split_plan p;
    char err[256];
    loom_split_input in = input(0, LOOM_GPU_LAYERS_AUTO, false);
    /* cuda0 share 2, cuda1 share 1, cpu share 1 over 8 layers: layer order
     * cpu, cuda0, cuda1 -> cumulative 1/4, 3/4, 1 -> 2, 4, 2 layers. */
    in.n_devices = 3;
    in.dev[2] = in.dev[1];
    snprintf(in.dev[0].name, sizeof in.dev[0].name, "cuda0");
    snprintf(in.dev[1].name, sizeof in.dev[1].name, "cuda1");
    in.dev[1].cpu = false;
    in.dev[0].share = 2;
    in.dev[1].share = 1;
    in.dev[2].share = 1;
    in.shares = true;
    CHECK(loom_split_plan_make(&in, &p, err, sizeof err) == LOOM_OK);
    CHECK_MSG(p.first[2] == 0 && p.count[2] == 2 && p.first[0] == 2 && p.count[0] == 4 &&
                  p.first[1] == 6 && p.count[1] == 2,
              "cpu %d+%d cuda0 %d+%d cuda1 %d+%d", p.first[2], p.count[2], p.first[0], p.count[0],
              p.first[1], p.count[1]);
    CHECK(p.head_dev == 1 && p.embd_dev == 2 && p.n_gpu_layers == 6);
    /* Without shares, by free memory: 3000 and 1000 -> 6 and 2 of 8. */
    in.shares = false;
    in.gpu_layers = 8;
    in.dev[0].mem_free = 3000;
    in.dev[1].mem_free = 1000;
    CHECK(loom_split_plan_make(&in, &p, err, sizeof err) == LOOM_OK);
    CHECK(p.count[0] == 6 && p.count[1] == 2 && p.count[2] == 0 && p.embd_dev == 0);
    /* Bad inputs. */
    in.shares = true;
    in.dev[0].share = in.dev[1].share = in.dev[2].share = 0;
    CHECK(loom_split_plan_make(&in, &p, err, sizeof err) == LOOM_ERR_INVALID_ARG &&
          strstr(err, "add up to 0"));
    in.dev[0].share = -1;
    CHECK(loom_split_plan_make(&in, &p, err, sizeof err) == LOOM_ERR_INVALID_ARG);
    in = input(0, -2, false);
    CHECK(loom_split_plan_make(&in, &p, err, sizeof err) == LOOM_ERR_INVALID_ARG);
    in = input(0, 1, false);
    in.dev[1].cpu = false;
    CHECK(loom_split_plan_make(&in, &p, err, sizeof err) == LOOM_ERR_INVALID_ARG &&
          strstr(err, "cpu"));
    in.dev[0].cpu = in.dev[1].cpu = true;
    CHECK(loom_split_plan_make(&in, &p, err, sizeof err) == LOOM_ERR_INVALID_ARG);
    in = input(0, 1, false);
    in.n_devices = 9;
    CHECK(loom_split_plan_make(&in, &p, err, sizeof err) == LOOM_ERR_INVALID_ARG);
}

static void test_parse_devices(void) {
    loom_device_ref r[LOOM_MAX_DEVICES];
    int n = 0;
    char err[256];
    CHECK(loom_split_parse_devices("vulkan:0,cpu", r, &n, err, sizeof err) == LOOM_OK);
    CHECK(n == 2 && !strcmp(r[0].name, "vulkan") && r[0].index == 0 && !strcmp(r[1].name, "cpu"));
    CHECK(loom_split_parse_devices("cuda:1,cuda:0", r, &n, err, sizeof err) == LOOM_OK);
    CHECK(n == 2 && r[0].index == 1 && r[1].index == 0);
    CHECK(loom_split_parse_devices("a:63", r, &n, err, sizeof err) == LOOM_OK && r[0].index == 63);
    const char *bad[] = {"",
                         ",",
                         "cpu,",
                         ",cpu",
                         "vulkan:",
                         ":0",
                         "vulkan:x",
                         "vk:-1",
                         "vk:64",
                         "vk:001",
                         "Vulkan",
                         "cpu cpu",
                         " cpu",
                         "cpu,cpu",
                         "a:1,a:1",
                         "a,b,c,d,e,f,g,h,i",
                         "a_very_long_backend_name_over_31_chars"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CHECK_MSG(loom_split_parse_devices(bad[i], r, &n, err, sizeof err) ==
                          LOOM_ERR_INVALID_ARG &&
                      err[0],
                  "'%s' accepted", bad[i]);
    }
}

/* The fuzz target's invariants over 20000 generated lists (fixed seed):
 * names, indices, separators and junk from a small alphabet, so that most
 * inputs are near-valid. */
static void test_parse_devices_generated(void) {
    static const char alpha[] = "abcz_09:,,:Z -";
    uint64_t x = 0x5eed5eedULL;
    int n_ok = 0;
    for (int it = 0; it < 20000; it++) {
        uint8_t buf[48];
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t len = (size_t)(x % 40);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = (uint8_t)alpha[x % (sizeof alpha - 1)];
        }
        LLVMFuzzerTestOneInput(buf, len);
        char str[48];
        memcpy(str, buf, len);
        str[len] = '\0';
        loom_device_ref r[LOOM_MAX_DEVICES];
        int n = 0;
        n_ok += loom_split_parse_devices(str, r, &n, NULL, 0) == LOOM_OK;
    }
    /* both paths exercised */
    CHECK_MSG(n_ok > 100 && n_ok < 19000, "%d of 20000 accepted", n_ok);
}

int main(void) {
    test_gpu_layers();
    test_auto();
    test_does_not_fit();
    test_shares();
    test_parse_devices();
    test_parse_devices_generated();
    return test_summary("test_placement");
}
