/* tests/model/test_model_config.c - presets, validation messages, size accounting. */
#include <math.h>
#include <string.h>

#include "loom/model_config.h"
#include "testing.h"

static void expect_invalid(const loom_model_config *c, const char *frag) {
    char err[256] = "";
    loom_status st = loom_model_config_validate(c, err, sizeof err);
    CHECK_MSG(st == LOOM_ERR_INVALID_ARG, "expected an error containing '%s'", frag);
    CHECK_MSG(strstr(err, frag) != NULL, "'%s' not in '%s'", frag, err);
}

int main(void) {
    char err[256];
    loom_model_config c;
    const char *presets[] = {"llama3-8b", "seed", "tiny-moe", "tiny-dense"};
    for (int i = 0; i < 4; i++) {
        CHECK(loom_model_config_preset(presets[i], &c, err, sizeof err) == LOOM_OK);
        CHECK_MSG(loom_model_config_validate(&c, err, sizeof err) == LOOM_OK, "%s: %s", presets[i],
                  err);
    }
    CHECK(loom_model_config_preset("gpt5", &c, err, sizeof err) == LOOM_ERR_INVALID_ARG);
    CHECK(strstr(err, "tiny-moe") != NULL);

    /* Llama-3.1-8B: 8.03 B parameters (Meta's model card), 128 KiB of f16 KV per token. */
    loom_model_size s;
    loom_model_config_preset("llama3-8b", &c, err, sizeof err);
    loom_model_config_size(&c, &s);
    CHECK_MSG(s.params_total == 8030261248LL, "llama3-8b params %lld", (long long)s.params_total);
    CHECK(s.params_active == s.params_total);
    CHECK(s.kv_bytes_per_token_f16 == 2 * 32 * 8 * 128 * 2);
    CHECK(s.bytes_q4_0 < s.bytes_q8_0 && s.bytes_q8_0 < s.bytes_f16);

    /* seed: 16 MoE layers of 8 experts; active = dense-equivalent + one extra expert per MoE layer.
     */
    loom_model_config_preset("seed", &c, err, sizeof err);
    loom_model_config_size(&c, &s);
    int64_t expert = 3 * 4096LL * 14336, router = 4096LL * 8;
    CHECK(s.params_total == 8030261248LL + 16 * (7 * expert + router));
    CHECK(s.params_active == 8030261248LL + 16 * (expert + router));
    CHECK(loom_model_config_layer_is_moe(&c, 1) && !loom_model_config_layer_is_moe(&c, 0));

    char text[2048];
    int w = loom_model_config_describe(&c, 8192, (size_t)24 << 30, text, sizeof text);
    CHECK(w > 0 && (size_t)w < sizeof text);
    CHECK(strstr(text, "top-2") && strstr(text, "llama3") && strstr(text, "fits 24.0 GiB"));

    /* validation names the field and the rule */
    loom_model_config_preset("llama3-8b", &c, err, sizeof err);
    loom_model_config b = c;
    b.n_kv_heads = 6;
    expect_invalid(&b, "n_heads (32) must be a multiple of n_kv_heads (6)");
    b = c;
    b.dim = 0;
    expect_invalid(&b, "dim must be positive");
    b = c;
    b.rope.high_freq_factor = 0.5f;
    expect_invalid(&b, "low_freq_factor < high_freq_factor");
    b = c;
    b.n_experts = 8;
    b.n_experts_used = 9;
    b.expert_ffn_dim = 16;
    expect_invalid(&b, "n_experts_used (9)");
    b = c;
    b.head_dim = 127;
    expect_invalid(&b, "head_dim (127) must be even");
    b = c;
    b.eos_id = 200000;
    expect_invalid(&b, "eos_id");
    b = c;
    b.rms_eps = 0.0f;
    expect_invalid(&b, "rms_eps");
    CHECK(loom_model_config_validate(NULL, err, sizeof err) == LOOM_ERR_INVALID_ARG);

    /* llama.cpp's rope_freqs.weight for Llama 3.1 (head_dim 128, theta 5e5,
     * 8/1/4/8192): high frequencies unscaled, wavelengths beyond 8192 divided
     * by 8, the band between smoothly interpolated. Pair 32's wavelength
     * 2*pi*500000^(64/128) = 4443 lies in the band: smooth = (8192/4443 - 1) /
     * 3, factor = 1 / ((1 - smooth) / 8 + smooth) = 2.69, computed here
     * independently of the implementation. */
    {
        loom_rope_params rp = loom_rope_params_llama3(128);
        float f[64];
        CHECK(loom_rope_freq_factors(&rp, f, 64) == LOOM_OK);
        CHECK(f[0] == 1.0f && f[10] == 1.0f && f[63] == 8.0f && f[40] == 8.0f);
        const double wl = 2.0 * 3.14159265358979323846 * pow(500000.0, 64.0 / 128.0);
        const double sm = (8192.0 / wl - 1.0) / 3.0, want = 1.0 / ((1.0 - sm) / 8.0 + sm);
        CHECK_MSG(fabs(f[32] - want) < 1e-6 * want && want > 2.6 && want < 2.8, "f[32] %g want %g",
                  f[32], want);
        for (int i = 1; i < 64; i++)
            CHECK(f[i] >= f[i - 1]);
        rp.scaling = LOOM_ROPE_SCALING_NONE;
        CHECK(loom_rope_freq_factors(&rp, f, 64) == LOOM_ERR_INVALID_ARG);
        rp = loom_rope_params_llama3(128);
        CHECK(loom_rope_freq_factors(&rp, f, 32) == LOOM_ERR_INVALID_ARG);
    }
    return test_summary("test_model_config");
}
