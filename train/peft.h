/* train/peft.h - LoRA adapters in PEFT's on-disk format, so that
 * `PeftModel.from_pretrained(base, DIR)` loads what loom trains and loom
 * loads what PEFT trains (docs/adr/0028-training.md).
 *
 * DIR/adapter_config.json: peft_type LORA, task_type CAUSAL_LM, r,
 *   lora_alpha, lora_dropout, target_modules, bias "none",
 *   base_model_name_or_path (as given), use_rslora/use_dora false.
 * DIR/adapter_model.safetensors: F32 tensors named
 *   base_model.model.model.layers.N.{self_attn,mlp}.P.lora_{A,B}.weight
 *   A [r, in], B [out, r] (PyTorch shapes), header padded to 8 bytes.
 * q_proj/k_proj B rows: PEFT's are in Hugging Face's order; a model with
 * adjacent-pair RoPE (GGUF, LOOM_ROPE_NORMAL) has them permuted per head
 * (loom/model.h), so rows are permuted on the way out and back on the way
 * in. Both files are written atomically. */
#ifndef LOOM_TRAIN_PEFT_H
#define LOOM_TRAIN_PEFT_H

#include <stddef.h>

#include "lora.h"

loom_status loom_peft_save(const char *dir, const loom_lora *lo, const char *base_model, char *err,
                           size_t err_n);

/* Read DIR's adapter for a model with config mc: its r, alpha, dropout and
 * targets from adapter_config.json, the weights from the safetensors file
 * (F32/F16/BF16). *out owned by the caller. Errors name the file and the
 * missing or mis-shaped tensor; unsupported features (DoRA, rsLoRA,
 * rank/alpha patterns, biases, modules_to_save) are refused by name. */
loom_status loom_peft_load(const char *dir, const loom_model_config *mc, loom_lora **out, char *err,
                           size_t err_n);

/* HF row order <-> the model's for B of projection which (identity unless
 * q/k under LOOM_ROPE_NORMAL). to_hf: model -> HF, else HF -> model.
 * rows x cols in place (scratch of rows*cols floats). */
void loom_peft_permute_rows(const loom_model_config *mc, loom_proj which, bool to_hf, float *w,
                            int64_t rows, int64_t cols, float *scratch);

#endif
