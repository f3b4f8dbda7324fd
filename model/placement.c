/* model/placement.c - the layer-split plan (loom/placement.h,
 * docs/adr/0030-layer-split.md): a pure function of sizes, so the loader,
 * `loom info` and the tests share one rule.
 *
 * Steps of loom_split_plan_make:
 *  1. Layers per device for a number n of layers off the cpu: the cpu takes
 *     the first L - n; the other devices share the last n in list order,
 *     in proportion to their free memory (equal when any is unknown), or
 *     with --tensor-split every device (cpu included) gets its share of L.
 *  2. Embedding with layer 0 (tied: with the head); head on the device of
 *     the last layer when that is not the cpu, if it fits, else on the cpu.
 *  3. Bytes per device: weights + KV of its layers + an activation reserve
 *     (+ logits on the head's device); the budget is free - free/16.
 *  4. auto: the largest n (head first, then without it) whose devices all
 *     fit their budgets; N: n = min(N, L). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "loom/placement.h"

static loom_status bad(char *err, size_t err_n, const char *msg) {
    if (err && err_n) snprintf(err, err_n, "split plan: %s", msg);
    return LOOM_ERR_INVALID_ARG;
}

/* Split total into parts by weights w (cumulative rounding, so the parts
 * add up to total and follow the weights as closely as integers can). */
static void apportion(int total, const double *w, int n, int *out) {
    double sum = 0, cum = 0;
    for (int i = 0; i < n; i++)
        sum += w[i];
    int given = 0;
    for (int i = 0; i < n; i++) {
        cum += w[i];
        int upto = sum > 0 ? (int)(total * cum / sum + 0.5) : (i == n - 1 ? total : 0);
        out[i] = upto - given;
        given = upto;
    }
}

static int cpu_index(const loom_split_input *in) {
    for (int d = 0; d < in->n_devices; d++)
        if (in->dev[d].cpu) return d;
    return -1;
}

/* Steps 1-3 for n layers off the cpu (ignored with shares) and the head
 * wanted off the cpu or not. */
static void assign(const loom_split_input *in, int n, bool head_off_cpu, loom_split_plan *p) {
    const int L = in->n_layers, c = cpu_index(in), D = in->n_devices;
    memset(p, 0, sizeof *p);
    p->n_devices = D;
    p->n_layers = L;
    memcpy(p->dev, in->dev, sizeof p->dev);
    int order[LOOM_MAX_DEVICES], k = 0; /* layer order: cpu, then the others as listed */
    order[k++] = c;
    for (int d = 0; d < D; d++)
        if (d != c) order[k++] = d;
    double w[LOOM_MAX_DEVICES];
    int cnt[LOOM_MAX_DEVICES];
    if (in->shares) {
        for (int i = 0; i < D; i++)
            w[i] = in->dev[order[i]].share;
        apportion(L, w, D, cnt);
    } else {
        bool known = true;
        for (int i = 1; i < D; i++)
            known = known && in->dev[order[i]].mem_free > 0;
        for (int i = 1; i < D; i++)
            w[i - 1] = known ? (double)in->dev[order[i]].mem_free : 1.0;
        if (D == 1) n = 0; /* only the cpu: nothing goes off it */
        cnt[0] = L - n;
        if (D > 1) apportion(n, w, D - 1, cnt + 1);
    }
    int first = 0, last_dev = c;
    for (int i = 0; i < D; i++) {
        p->first[order[i]] = first;
        p->count[order[i]] = cnt[i];
        first += cnt[i];
        if (cnt[i] > 0) last_dev = order[i];
    }
    p->n_gpu_layers = L - p->count[c];
    p->head_dev = head_off_cpu && last_dev != c ? last_dev : c;
    int layer0 = c;
    for (int i = 0; i < D; i++)
        if (p->count[order[i]] > 0) {
            layer0 = order[i];
            break;
        }
    p->embd_dev = in->tied ? p->head_dev : layer0;

    for (int d = 0; d < D; d++) {
        size_t wb = 0;
        for (int l = p->first[d]; l < p->first[d] + p->count[d]; l++)
            wb += in->layer_bytes[l];
        if (d == p->embd_dev) wb += in->embd_bytes;
        if (d == p->head_dev) wb += in->head_bytes;
        p->weight_bytes[d] = wb;
        p->kv_bytes[d] = (size_t)p->count[d] * in->kv_layer_bytes;
        bool used = p->count[d] > 0 || d == p->embd_dev || d == p->head_dev;
        p->act_bytes[d] = (used ? in->act_bytes : 0) + (d == p->head_dev ? in->logits_bytes : 0);
        p->need_bytes[d] = wb + p->kv_bytes[d] + p->act_bytes[d];
        size_t f = in->dev[d].mem_free;
        p->margin[d] = f / LOOM_SPLIT_MARGIN_DIV;
        p->budget[d] = f - p->margin[d];
    }
    p->fits = true;
    for (int d = 0; d < D; d++)
        if (!in->dev[d].cpu && p->budget[d] && p->need_bytes[d] > p->budget[d]) p->fits = false;
}

/* The largest n off the cpu that fits, without the head (-1: none, which
 * only happens when the activations alone do not fit). */
static int max_fitting(const loom_split_input *in) {
    loom_split_plan t;
    for (int n = in->n_layers; n >= 0; n--) {
        assign(in, n, false, &t);
        if (t.fits) return n;
    }
    return 0;
}

static double mib(size_t b) {
    return (double)b / (1024.0 * 1024.0);
}

static void explain(loom_split_plan *p) {
    size_t k = 0;
    p->why[0] = '\0';
    for (int d = 0; d < p->n_devices && k < sizeof p->why; d++) {
        if (!p->budget[d] || p->need_bytes[d] <= p->budget[d]) continue;
        int w = snprintf(p->why + k, sizeof p->why - k,
                         "%s%s needs %.1f MiB (weights %.1f, KV cache %.1f, activations %.1f) "
                         "but has %.1f MiB (%.1f free - %.1f margin)%s",
                         k ? "; " : "", p->dev[d].name, mib(p->need_bytes[d]),
                         mib(p->weight_bytes[d]), mib(p->kv_bytes[d]), mib(p->act_bytes[d]),
                         mib(p->budget[d]), mib(p->dev[d].mem_free), mib(p->margin[d]),
                         p->dev[d].cpu ? " (the OS may page)" : "");
        if (w < 0) break;
        k += (size_t)w;
    }
    if (!p->fits && k < sizeof p->why)
        snprintf(p->why + k, sizeof p->why - k,
                 "; at most %d layers fit off the cpu (--gpu-layers %d)", p->max_fitting,
                 p->max_fitting);
}

loom_status loom_split_plan_make(const loom_split_input *in, loom_split_plan *out, char *err,
                                 size_t err_n) {
    if (!in || !out) return bad(err, err_n, "NULL argument");
    if (in->n_devices < 1 || in->n_devices > LOOM_MAX_DEVICES)
        return bad(err, err_n, "1 to 8 devices");
    int n_cpu = 0;
    for (int d = 0; d < in->n_devices; d++)
        n_cpu += in->dev[d].cpu;
    if (n_cpu != 1) return bad(err, err_n, "exactly one device must be the cpu");
    if (in->n_layers < 0 || (in->n_layers > 0 && !in->layer_bytes))
        return bad(err, err_n, "no layer sizes");
    if (in->gpu_layers < LOOM_GPU_LAYERS_AUTO)
        return bad(err, err_n, "gpu_layers must be auto (-1) or >= 0");
    if (in->shares) {
        double sum = 0;
        for (int d = 0; d < in->n_devices; d++) {
            if (!(in->dev[d].share >= 0)) return bad(err, err_n, "a share is negative");
            sum += in->dev[d].share;
        }
        if (!(sum > 0)) return bad(err, err_n, "the shares add up to 0");
    }
    const int L = in->n_layers;
    if (in->shares) {
        assign(in, 0, true, out);
        if (!out->fits) assign(in, 0, false, out);
    } else if (in->gpu_layers == LOOM_GPU_LAYERS_AUTO) {
        bool done = false;
        for (int n = L; n >= 0 && !done; n--) {
            assign(in, n, true, out);
            if (!out->fits) assign(in, n, false, out);
            done = out->fits;
        }
        if (!done) assign(in, 0, false, out); /* nothing fits: all on the cpu */
    } else {
        int n = in->gpu_layers < L ? in->gpu_layers : L;
        assign(in, n, true, out);
        if (!out->fits) {
            loom_split_plan no_head;
            assign(in, n, false, &no_head);
            if (no_head.fits) *out = no_head;
        }
    }
    out->max_fitting = max_fitting(in);
    explain(out);
    return LOOM_OK;
}

int loom_split_plan_layer_device(const loom_split_plan *p, int l) {
    if (!p || l < 0 || l >= p->n_layers) return -1;
    for (int d = 0; d < p->n_devices; d++)
        if (l >= p->first[d] && l < p->first[d] + p->count[d]) return d;
    return -1;
}

/* "layers 4-7" / "no layers", and "+ embd" / "+ head". */
static void layers_of(const loom_split_plan *p, int d, char *buf, size_t n) {
    int k;
    if (p->count[d] == 0)
        k = snprintf(buf, n, "no layers");
    else if (p->count[d] == 1)
        k = snprintf(buf, n, "layer %d", p->first[d]);
    else
        k = snprintf(buf, n, "layers %d-%d", p->first[d], p->first[d] + p->count[d] - 1);
    if (k < 0 || (size_t)k >= n) return;
    if (d == p->embd_dev) k += snprintf(buf + k, n - (size_t)k, " + embd");
    if (k < 0 || (size_t)k >= n) return;
    if (d == p->head_dev) snprintf(buf + k, n - (size_t)k, " + head");
}

/* snprintf at *k, advancing *k (past n when truncated, like snprintf). */
static void app(char *buf, size_t n, size_t *k, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static void app(char *buf, size_t n, size_t *k, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(*k < n ? buf + *k : NULL, *k < n ? n - *k : 0, fmt, ap);
    va_end(ap);
    if (w > 0) *k += (size_t)w;
}

int loom_split_plan_describe(const loom_split_plan *p, bool one_line, char *buf, size_t n) {
    if (!p || !buf || !n) return 0;
    size_t k = 0;
    char what[64];
    if (one_line) {
        app(buf, n, &k, "split:");
        for (int d = 0, first = 1; d < p->n_devices; d++) {
            if (!p->count[d] && d != p->embd_dev && d != p->head_dev) continue;
            layers_of(p, d, what, sizeof what);
            app(buf, n, &k, "%s %s %s, %.1f MiB", first ? "" : ";", p->dev[d].name, what,
                mib(p->need_bytes[d]));
            if (p->budget[d]) app(buf, n, &k, " of %.1f", mib(p->budget[d]));
            first = 0;
        }
        app(buf, n, &k, " (%d of %d layers off the cpu)", p->n_gpu_layers, p->n_layers);
        if (!p->fits) app(buf, n, &k, " - DOES NOT FIT: %s", p->why);
        return (int)k;
    }
    app(buf, n, &k, "%-8s %-22s %10s %10s %10s %10s %10s %10s\n", "device", "holds", "weights",
        "kv cache", "activ.", "total", "free", "budget");
    for (int d = 0; d < p->n_devices; d++) {
        layers_of(p, d, what, sizeof what);
        app(buf, n, &k, "%-8s %-22s %10.1f %10.1f %10.1f %10.1f ", p->dev[d].name, what,
            mib(p->weight_bytes[d]), mib(p->kv_bytes[d]), mib(p->act_bytes[d]),
            mib(p->need_bytes[d]));
        if (p->dev[d].mem_free)
            app(buf, n, &k, "%10.1f %10.1f\n", mib(p->dev[d].mem_free), mib(p->budget[d]));
        else
            app(buf, n, &k, "%10s %10s\n", "unknown", "-");
    }
    app(buf, n, &k,
        "(MiB; budget = free - free/%d margin; activations are an estimate at the context "
        "and batch asked for)\n",
        LOOM_SPLIT_MARGIN_DIV);
    app(buf, n, &k, "layers off the cpu: %d of %d (at most %d fit)\n", p->n_gpu_layers, p->n_layers,
        p->max_fitting);
    if (p->fits)
        app(buf, n, &k, "fits: yes%s%s\n", p->why[0] ? "; note: " : "", p->why);
    else
        app(buf, n, &k, "fits: NO: %s\n", p->why);
    return (int)k;
}

/* ---------------- the device list ---------------- */

loom_status loom_split_parse_devices(const char *s, loom_device_ref *out, int *n, char *err,
                                     size_t err_n) {
    if (!s || !out || !n) return bad(err, err_n, "NULL argument");
    *n = 0;
    const char *p = s;
    for (;;) {
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const size_t len = (size_t)(e - p);
        if (len == 0) {
            if (err && err_n) snprintf(err, err_n, "'%s' has an empty entry (NAME[:INDEX],...)", s);
            return LOOM_ERR_INVALID_ARG;
        }
        loom_device_ref r = {{0}, 0};
        size_t k = 0;
        while (k < len &&
               ((p[k] >= 'a' && p[k] <= 'z') || (p[k] >= '0' && p[k] <= '9') || p[k] == '_'))
            k++;
        bool ok = k > 0 && k < sizeof r.name;
        if (ok && k < len) { /* ":INDEX" */
            ok = p[k] == ':' && k + 1 < len && len - (k + 1) <= 2;
            int v = 0;
            for (size_t i = k + 1; ok && i < len; i++) {
                ok = p[i] >= '0' && p[i] <= '9';
                v = v * 10 + (p[i] - '0');
            }
            ok = ok && v < 64;
            r.index = v;
        }
        if (!ok) {
            if (err && err_n)
                snprintf(err, err_n, "'%.*s' is not a device (NAME[:INDEX], e.g. vulkan:0 or cpu)",
                         (int)(len > 64 ? 64 : len), p);
            return LOOM_ERR_INVALID_ARG;
        }
        memcpy(r.name, p, k);
        for (int i = 0; i < *n; i++)
            if (!strcmp(out[i].name, r.name) && out[i].index == r.index) {
                if (err && err_n) snprintf(err, err_n, "'%.*s' is listed twice", (int)len, p);
                return LOOM_ERR_INVALID_ARG;
            }
        if (*n == LOOM_MAX_DEVICES) {
            if (err && err_n) snprintf(err, err_n, "more than %d devices", LOOM_MAX_DEVICES);
            return LOOM_ERR_INVALID_ARG;
        }
        out[(*n)++] = r;
        if (!*e) return LOOM_OK;
        p = e + 1;
    }
}
