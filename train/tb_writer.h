/* train/tb_writer.h - TensorBoard event files (scalars), written without
 * TensorFlow. docs/adr/0029-training-data-and-metrics.md.
 *
 * Format (what tensorboard's EventFileLoader reads): a TFRecord stream,
 * each record
 *     u64 LE length, u32 LE masked_crc32c(length bytes),
 *     payload[length], u32 LE masked_crc32c(payload)
 * with masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 and CRC-32C
 * (Castagnoli, reflected polynomial 0x82F63B78). Each payload is an Event
 * protobuf: wall_time (field 1, double), step (field 2, varint), and either
 * file_version (field 3, "brain.Event:2", the first record) or summary
 * (field 5: Summary{value (1): Value{tag (1), simple_value (2, float)}}).
 *
 * The file is appended as training runs and flushed after every record
 * (TensorBoard tails growing files); a crash loses at most the record being
 * written, which readers detect by its length/CRC and skip. */
#ifndef LOOM_TRAIN_TB_WRITER_H
#define LOOM_TRAIN_TB_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "loom/status.h"

/* CRC-32C of n bytes (crc32c("123456789") == 0xe3069283). */
uint32_t loom_crc32c(const void *p, size_t n);
/* TFRecord's masking of a CRC. */
uint32_t loom_crc32c_mask(uint32_t crc);

typedef struct loom_tb_writer loom_tb_writer;

/* Creates DIR (one level, if missing) and the event file
 * DIR/events.out.tfevents.<unix seconds>.<host>.<pid>.loom (never an
 * existing file: .1.loom, .2.loom, ... when taken), writes the
 * file_version record. *out is owned by the caller (loom_tb_close). On
 * failure err gets one line naming the path and the reason. */
loom_status loom_tb_open(const char *dir, loom_tb_writer **out, char *err, size_t errn);
/* The path of the event file (owned by the writer). */
const char *loom_tb_path(const loom_tb_writer *w);
/* One scalar: tag (non-empty, < 256 bytes), value, step >= 0, wall_time in
 * seconds since the epoch (< 0: now). */
loom_status loom_tb_scalar(loom_tb_writer *w, const char *tag, float value, int64_t step,
                           double wall_time);
/* Flushes and closes; NULL is fine. */
void loom_tb_close(loom_tb_writer *w);

/* Reader for tests and `loom` tools: walks every record of an event file,
 * checking both CRCs, and calls cb for each scalar (the file_version record
 * is checked, not reported). LOOM_ERR_FORMAT with err naming the record's
 * offset on a bad CRC, a truncated record or a malformed Event. */
typedef void (*loom_tb_scalar_cb)(void *ud, const char *tag, float value, int64_t step,
                                  double wall_time);
loom_status loom_tb_read(const char *path, loom_tb_scalar_cb cb, void *ud, char *err, size_t errn);

#endif
