/* cli/rag_info_cmd.c - `loom rag info`: what an index file holds, the text
 * settings of `loom rag index` included (format 1.1; ADR 0032). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/rag_text.h"

static void info_usage(FILE *f) {
    fprintf(f, "usage: loom rag info --index INDEX\n");
}

int loom_cli_rag_info(int argc, char **argv) {
    const char *C = "rag info", *index = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (loom_cli_is_help(a)) return info_usage(stdout), 0;
        if (!strcmp(a, "--index")) {
            if (!(v = loom_cli_value(C, argc, argv, &i))) return LOOM_CLI_USAGE;
            index = v;
        } else {
            loom_cli_unknown(C, a);
            info_usage(stderr);
            return LOOM_CLI_USAGE;
        }
    }
    if (!index) {
        fprintf(stderr, "loom rag info: --index INDEX is required\n");
        return LOOM_CLI_USAGE;
    }
    loom_rag_index *ix = NULL;
    char err[400];
    if (loom_rag_index_load(index, 0, &ix, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom rag info: %s\n", err);
        return 1;
    }
    static const char *const tn[] = {"f32", "f16", "int8"}, *const mn[] = {"ip", "cosine", "l2"};
    printf("%s: %u vectors (%u live) x %d, %s, %s, encoder '%s'\n", index, loom_rag_index_count(ix),
           loom_rag_index_live(ix), loom_rag_index_dim(ix), tn[loom_rag_index_vtype(ix)],
           mn[loom_rag_index_metric(ix)], loom_rag_index_encoder(ix));
    loom_rag_text_settings ts;
    if (loom_rag_index_text_settings(ix, &ts))
        printf("text: chunk %u overlap %u tokens, encoder %u-d, max %u tokens, %s\n", ts.chunk,
               ts.overlap, ts.encoder_dim, ts.max_tokens,
               ts.normalize ? "mean pooling + L2 normalisation" : "not normalised");
    else
        printf("text: no settings recorded (vectors, or a format 1.0 file)\n");
    loom_rag_hnsw_params hp;
    if (loom_rag_index_hnsw_params(ix, &hp))
        printf("hnsw: M=%d efConstruction=%d seed=%" PRIu64 "\n", hp.M, hp.ef_construction,
               hp.seed);
    else
        printf("hnsw: none (exact search)\n");
    printf("distance kernels: %s\n", loom_rag_isa_name());
    loom_rag_index_free(ix);
    return 0;
}
