/* train/finetune_data.h - training examples from JSONL for `loom finetune`:
 * tokens plus which of them the loss is computed on.
 *
 * One JSON object per line (blank lines skipped):
 *   {"text": "..."}      every token is trained on; BOS in front when the
 *                        tokenizer asks for it, EOS (when known) at the end;
 *   {"messages": [{"role": "...", "content": "..."}, ...]}
 *                        rendered with the model's chat template, chosen
 *                        by its fingerprint as `loom chat` does
 *                        (loom_chat_template_select, docs/adr/0025), or
 *                        the one named; only the assistant messages'
 *                        tokens (content and end-of-turn) are trained on:
 *                        the prompt is masked, as TRL's completion-only
 *                        collator does. An unknown template is an error
 *                        (on the first chat line) naming its fingerprint.
 * Examples longer than max_len tokens are truncated to max_len. A line
 * that is not a JSON object with one of these fields is an error naming the
 * file and line. */
#ifndef LOOM_TRAIN_FINETUNE_DATA_H
#define LOOM_TRAIN_FINETUNE_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/status.h"
#include "loom/tokenizer.h"

typedef struct loom_ft_example {
    int32_t n;
    int32_t *ids;  /* n tokens */
    uint8_t *loss; /* n flags: 1 = predicting this token counts in the loss */
} loom_ft_example;

typedef struct loom_ft_dataset {
    int64_t n;
    loom_ft_example *ex;
    int64_t n_tokens, n_loss_tokens;
} loom_ft_dataset;

/* Read path. The dataset owns everything (loom_ft_dataset_free).
 * chat_template: a template name (loom_chat_template_names) overriding the
 * model's, or NULL. loom_ft_dataset_load = the model's template. */
loom_status loom_ft_dataset_load_chat(const char *path, const loom_tokenizer *tok,
                                      const char *chat_template, int32_t max_len,
                                      loom_ft_dataset *out, char *err, size_t err_n);
loom_status loom_ft_dataset_load(const char *path, const loom_tokenizer *tok, int32_t max_len,
                                 loom_ft_dataset *out, char *err, size_t err_n);
void loom_ft_dataset_free(loom_ft_dataset *d);

/* Inputs and targets of one sequence of T positions from example e:
 * tokens[t] = ids[t] (pad after the end), targets[t] = ids[t+1] when that
 * token counts in the loss, else -1 (ignored, as ignore_index). Returns the
 * number of counted targets. */
int32_t loom_ft_example_fill(const loom_ft_example *e, int32_t T, int32_t pad, int32_t *tokens,
                             int32_t *targets);

#endif
