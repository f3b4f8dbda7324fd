/* train/merge.h - `loom merge-lora`: a model with a LoRA adapter folded into
 * its weights, W' = W + (alpha / r) * B A (PEFT's merge_and_unload), written
 * as a GGUF that loom and llama.cpp load like any other
 * (docs/adr/0033-lora-merge-serve-packing.md). */
#ifndef LOOM_TRAIN_MERGE_H
#define LOOM_TRAIN_MERGE_H

#include <stddef.h>

#include "loom/model.h"

/* Merge the PEFT adapter in lora_dir into the model at base (a GGUF file or
 * a Hugging Face checkpoint directory, which is first exported to a
 * temporary f32 GGUF) and write out (GGUF, atomically) with matrices at
 * type (per loom_model_store_type). Each adapted weight is dequantized to
 * f32, gets the delta added in f32, then is stored at its type; all other
 * tensors go through as loom_model_export_gguf does. Every adapter tensor
 * must land on a weight of the base (else an error names it). stats
 * (optional) as the export's; n_merged (optional) counts merged weights. */
loom_status loom_lora_merge_gguf(const char *base, const char *lora_dir, const char *out,
                                 loom_dtype type, loom_export_stats *stats, int *n_merged,
                                 char *err, size_t err_n);

#endif
