/* train/data_prep_pack.h - tokenisation and packing of plain-text records
 * into fixed-length training sequences with document boundaries, for
 * `loom data prep --tokenizer T --tokens F.bin`.
 * docs/adr/0029-training-data-and-metrics.md.
 *
 * Each document becomes [BOS when the tokenizer asks for it (
 * loom_tokenizer_add_bos)] + encode(text, special-token text kept as plain
 * text) + [EOS]. Documents are laid end to end into sequences of exactly
 * seq_len tokens; a document that does not fit the rest of a sequence
 * continues in the next one (as a new segment there). Every token carries
 * its segment: 1, 2, ... per document piece within its sequence, 0 for the
 * padding (EOS ids) that fills the last sequence. A trainer attends only
 * within equal nonzero segments and takes no loss on segment 0.
 *
 * File "LOOMPAK1", little-endian:
 *   char magic[8] "LOOMPAK1"; u32 version 1; u32 seq_len; u64 n_seqs;
 *   u64 n_docs; u64 n_tokens (document tokens, padding excluded);
 *   u32 vocab_size; i32 pad_id; u32 bos_added (0/1); u32 reserved 0;
 *   i32 tokens[n_seqs][seq_len]; u16 segments[n_seqs][seq_len]
 * written to a temporary file and renamed by loom_packer_finish. */
#ifndef LOOM_TRAIN_DATA_PREP_PACK_H
#define LOOM_TRAIN_DATA_PREP_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "loom/status.h"
#include "loom/tokenizer.h"

#define LOOM_PACK_HEADER_BYTES 56

typedef struct loom_packer loom_packer;

typedef struct loom_pack_stats {
    int64_t docs, tokens, seqs, padding, split_docs;
} loom_pack_stats;

/* seq_len 16..65535; tok must have an EOS id and outlive the packer. */
loom_status loom_packer_open(const char *path, const loom_tokenizer *tok, int seq_len,
                             loom_packer **out, char *err, size_t errn);
loom_status loom_packer_add(loom_packer *p, const char *text, size_t n, char *err, size_t errn);
/* Pads and writes the last sequence, writes the header, renames; frees p. */
loom_status loom_packer_finish(loom_packer *p, loom_pack_stats *st, char *err, size_t errn);
/* Frees p and removes its temporary file (after an error). NULL is fine. */
void loom_packer_abort(loom_packer *p);

#endif
