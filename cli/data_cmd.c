/* cli/data_cmd.c - `loom data prep`: options for the data pipeline of
 * train/data_prep.h (docs/adr/0029-training-data-and-metrics.md). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "train/data_prep.h"

static void data_usage(FILE *f) {
    fprintf(f,
            "usage: loom data prep (--in FILE.jsonl | --html DIR) -o OUT.jsonl [--report R.json]\n"
            "                      [--text-field text] [--messages-field messages]\n"
            "                      [--minhash-threshold 0.8] [--ngram 5] [--num-perm 128]\n"
            "                      [--seed 1] [--qa-heading N] [--min-chars 1]\n"
            "                      [--max-url-fraction 0.5] [--max-link-density 0.5]\n"
            "                      [--keep-emails] [--redact-urls] [--quiet]\n"
            "                      [--tokenizer tokenizer.json|MODEL.gguf --tokens OUT.bin\n"
            "                       [--pack-len 2048]]\n"
            "Cleans a data set for fine-tuning: JSONL records with a plain-text field or a\n"
            "chat messages field ([{role, content}]), or every .html/.htm file under DIR\n"
            "(libxml2's HTML parser; navigation, headers, footers, scripts, permalinks and\n"
            "link-dense blocks removed). Then NFKC and whitespace cleanup, e-mail\n"
            "addresses redacted to <EMAIL> (--keep-emails: kept), URLs to <URL> with\n"
            "--redact-urls, records mostly made of URLs or shorter than --min-chars\n"
            "characters removed, exact duplicates removed, and near duplicates: MinHash of\n"
            "word --ngram shingles with --num-perm permutations (--seed), LSH bands and rows\n"
            "chosen for --minhash-threshold (estimated Jaccard; 0 turns it off).\n"
            "--qa-heading N: HTML only, one chat record per heading <h2>..<hN> that has\n"
            "text under it (user: the heading, assistant: that text), e.g. 3 for the\n"
            "Python FAQ pages; N = 1: <h1> only.\n"
            "It prints what each stage removed and why (--quiet: nothing), and with\n"
            "--report writes the same as JSON with every removed record.\n"
            "--tokenizer/--tokens: also tokenise the kept plain-text records (BOS if the\n"
            "tokenizer wants it, EOS after each) and pack them into sequences of --pack-len\n"
            "tokens with per-token document segments (LOOMPAK1 file, ADR 0029).\n"
            "ranges: --minhash-threshold 0..1, --ngram 1..64, --num-perm 1..1024,\n"
            "--qa-heading 0..6 (0: whole pages), --min-chars 0..100000000,\n"
            "--max-url-fraction 0..1, --max-link-density 0..1, --pack-len 16..65535\n");
}

static int data_prep(int argc, char **argv) {
    static const char *cmd = "data prep";
    loom_data_prep_opts o;
    loom_data_prep_defaults(&o);
    o.log = stdout;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (loom_cli_is_help(a)) {
            data_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--keep-emails")) {
            o.keep_emails = true;
            continue;
        }
        if (!strcmp(a, "--redact-urls")) {
            o.redact_urls = true;
            continue;
        }
        if (!strcmp(a, "--quiet")) {
            o.log = NULL;
            continue;
        }
        const char **str = NULL;
        int *num = NULL, lo = 0, hi = 0;
        double *dbl = NULL;
        if (!strcmp(a, "--in"))
            str = &o.in_jsonl;
        else if (!strcmp(a, "--html"))
            str = &o.html_dir;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output"))
            str = &o.out_path;
        else if (!strcmp(a, "--tokenizer"))
            str = &o.tokenizer_path;
        else if (!strcmp(a, "--tokens"))
            str = &o.tokens_path;
        else if (!strcmp(a, "--pack-len"))
            num = &o.pack_len, lo = 16, hi = 65535;
        else if (!strcmp(a, "--report"))
            str = &o.report_path;
        else if (!strcmp(a, "--text-field"))
            str = &o.text_field;
        else if (!strcmp(a, "--messages-field"))
            str = &o.messages_field;
        else if (!strcmp(a, "--ngram"))
            num = &o.ngram, lo = 1, hi = 64;
        else if (!strcmp(a, "--num-perm"))
            num = &o.num_perm, lo = 1, hi = 1024;
        else if (!strcmp(a, "--qa-heading"))
            num = &o.split_level, lo = 0, hi = 6;
        else if (!strcmp(a, "--min-chars"))
            num = &o.min_chars, lo = 0, hi = 100000000;
        else if (!strcmp(a, "--minhash-threshold"))
            dbl = &o.threshold;
        else if (!strcmp(a, "--max-url-fraction"))
            dbl = &o.max_url_fraction;
        else if (!strcmp(a, "--max-link-density"))
            dbl = &o.max_link_density;
        else if (strcmp(a, "--seed") != 0) {
            loom_cli_unknown(cmd, a);
            data_usage(stderr);
            return LOOM_CLI_USAGE;
        }
        const char *v = loom_cli_value(cmd, argc, argv, &i);
        if (!v) return LOOM_CLI_USAGE;
        if (str) {
            *str = v;
        } else if (num) {
            if (!loom_cli_parse_int(cmd, a, v, lo, hi, num)) return LOOM_CLI_USAGE;
        } else if (dbl) {
            if (!loom_cli_parse_f64(cmd, a, v, 0, 1, dbl)) return LOOM_CLI_USAGE;
        } else if (!loom_cli_parse_u64(cmd, "--seed", v, 0, UINT64_MAX, &o.seed)) {
            return LOOM_CLI_USAGE;
        }
    }
    if (!o.in_jsonl == !o.html_dir) {
        fprintf(stderr, "loom %s: give one input, --in FILE.jsonl or --html DIR\n", cmd);
        return LOOM_CLI_USAGE;
    }
    if (!o.out_path) {
        fprintf(stderr, "loom %s: -o OUT.jsonl is required\n", cmd);
        return LOOM_CLI_USAGE;
    }
    if (o.split_level && !o.html_dir) {
        fprintf(stderr, "loom %s: --qa-heading applies to --html input only\n", cmd);
        return LOOM_CLI_USAGE;
    }
    if (!o.tokenizer_path != !o.tokens_path) {
        fprintf(stderr, "loom %s: --tokenizer and --tokens go together\n", cmd);
        return LOOM_CLI_USAGE;
    }
    if (!o.text_field[0] || !o.messages_field[0]) {
        fprintf(stderr, "loom %s: field names must not be empty\n", cmd);
        return LOOM_CLI_USAGE;
    }
    char err[4400] = "";
    loom_data_prep_result res;
    loom_status st = loom_data_prep(&o, &res, err, sizeof err);
    if (st != LOOM_OK) {
        fprintf(stderr, "loom %s: %s\n", cmd, err[0] ? err : loom_status_str(st));
        return 1;
    }
    return 0;
}

int loom_cli_data(int argc, char **argv) {
    if (argc >= 2 && loom_cli_is_help(argv[1])) {
        data_usage(stdout);
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "prep")) return data_prep(argc, argv);
    if (argc >= 2) fprintf(stderr, "loom data: unknown command '%s' (prep)\n", argv[1]);
    data_usage(stderr);
    return LOOM_CLI_USAGE;
}
