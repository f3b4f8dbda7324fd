/* loom/placement.h - the layer-split plan: which device holds which layers
 * of a model, the output head and the token embedding, and whether it fits
 * (docs/adr/0030-layer-split.md).
 *
 * One pure function decides it from sizes alone (weights per layer, KV cache
 * per layer, an activation reserve, each device's free memory), so the
 * loader (arch/load.c), `loom info --gpu-layers` and the unit test all get
 * the same plan from the same numbers; nothing here touches a device.
 *
 * Layer order: the cpu, when it holds layers, holds the FIRST ones (the part
 * that was not offloaded, as llama.cpp's -ngl keeps them); the other devices
 * follow in the order they were listed, each a contiguous range. So
 * `--gpu-layers N` puts the last N layers on the device(s) and
 * `--devices vulkan:0,cpu --tensor-split 3,1` gives vulkan the last 3/4.
 * The output head (output_norm + output) goes to the device of the last
 * layer when that is not the cpu and it still fits, else to the cpu. The
 * token embedding goes with layer 0, except a tied one (the head's matrix
 * is the embedding), which goes with the head. */
#ifndef LOOM_PLACEMENT_H
#define LOOM_PLACEMENT_H

#include "loom/export.h"

#include <stdbool.h>
#include <stddef.h>

#include "loom/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_MAX_DEVICES     8
#define LOOM_GPU_LAYERS_AUTO (-1) /* as many layers as fit */
/* Share of a device's budget kept free in `auto` (and reported in the
 * plan): budget = free - free / LOOM_SPLIT_MARGIN_DIV (6.25%), for the
 * driver's own allocations, the scheduler's copies and estimate error. */
#define LOOM_SPLIT_MARGIN_DIV 16

typedef struct loom_split_device {
    char name[32];   /* "vulkan", "cuda", "cpu" */
    bool cpu;        /* the host device (holds what the others do not) */
    size_t mem_free; /* bytes available to the model; 0 = unknown (no limit) */
    float share;     /* --tensor-split share; used when the input has shares */
} loom_split_device;

typedef struct loom_split_input {
    int n_layers;
    const size_t *layer_bytes; /* weights of each layer, n_layers of them */
    size_t kv_layer_bytes;     /* K + V cache of one layer at the requested context */
    size_t embd_bytes;         /* token_embd */
    size_t head_bytes;         /* output_norm + output (output_norm only when tied) */
    bool tied;                 /* the head's matrix is token_embd */
    size_t act_bytes;          /* activation reserve on every device that computes */
    size_t logits_bytes;       /* logits, on the head's device */
    int gpu_layers;            /* LOOM_GPU_LAYERS_AUTO or the layers off the cpu */
    bool shares;               /* dev[].share gives every device's share of the layers */
    int n_devices;             /* 1..LOOM_MAX_DEVICES, exactly one with cpu = true */
    loom_split_device dev[LOOM_MAX_DEVICES];
} loom_split_input;

typedef struct loom_split_plan {
    int n_devices;
    loom_split_device dev[LOOM_MAX_DEVICES];
    int first[LOOM_MAX_DEVICES], count[LOOM_MAX_DEVICES]; /* layers [first, first+count) */
    int embd_dev, head_dev;                               /* device indices */
    int n_layers, n_gpu_layers;                           /* layers, and those off the cpu */
    /* Bytes per device: weights, KV cache, activation reserve (+ logits),
     * their sum, the budget (free - margin; 0 = unknown) and the margin. */
    size_t weight_bytes[LOOM_MAX_DEVICES], kv_bytes[LOOM_MAX_DEVICES];
    size_t act_bytes[LOOM_MAX_DEVICES], need_bytes[LOOM_MAX_DEVICES];
    size_t budget[LOOM_MAX_DEVICES], margin[LOOM_MAX_DEVICES];
    bool fits;       /* every non-cpu device's need is within its budget */
    int max_fitting; /* the largest gpu_layers that fits (layers off the cpu) */
    char why[512];   /* what does not fit and why; "" when it fits */
} loom_split_plan;

/* Make the plan. Errors (LOOM_ERR_INVALID_ARG, message in err): no cpu
 * device or more than one, n_devices out of range, gpu_layers below -1,
 * shares given with a negative or all-zero share. gpu_layers above n_layers
 * is clamped (llama.cpp's -ngl 99 idiom). A plan that does not fit is not an
 * error: fits is false and why says which device, by how much, and the
 * gpu_layers that would fit. */
LOOM_API loom_status loom_split_plan_make(const loom_split_input *in, loom_split_plan *out,
                                          char *err, size_t err_n);
/* Device index of layer l, -1 when out of range. */
LOOM_API int loom_split_plan_layer_device(const loom_split_plan *p, int l);
/* The plan in words: one line ("split: vulkan layers 4-7 + head 12.1 MiB,
 * cpu layers 0-3 + embd 10.0 MiB") or a table, one line per device, plus
 * what does not fit. Returns the length like snprintf. */
LOOM_API int loom_split_plan_describe(const loom_split_plan *p, bool one_line, char *buf, size_t n);

/* One entry of a device list: "vulkan:0" -> {"vulkan", 0}, "cpu" -> {"cpu", 0}. */
typedef struct loom_device_ref {
    char name[32];
    int index;
} loom_device_ref;

/* Parse a device list "NAME[:INDEX][,NAME[:INDEX]]..." (--devices): names of
 * 1..31 characters [a-z0-9_], indices 0..63 in decimal, no blanks, no empty
 * entry, no entry twice, at most LOOM_MAX_DEVICES. Syntax only: whether a
 * backend of that name exists is the loader's question. On error
 * LOOM_ERR_INVALID_ARG and a message naming the entry in err. */
LOOM_API loom_status loom_split_parse_devices(const char *s, loom_device_ref *out, int *n,
                                              char *err, size_t err_n);

#ifdef __cplusplus
}
#endif
#endif
