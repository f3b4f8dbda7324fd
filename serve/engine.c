/* serve/engine.c - the step loop over KV slots (see engine.h); KV blocks,
 * prefix reuse and preemption (docs/adr/0035) are in engine_blocks.c. */
#define _POSIX_C_SOURCE 200809L
#include "serve/engine.h"
#include "serve/engine_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loom/tokenizer.h"
#include "serve/logprobs.h"
#include "serve/openai_json.h"
#include "serve/text.h"

const double loom_engine_bucket_le[LOOM_ENGINE_N_BUCKETS - 1] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void observe(loom_engine_hist *h, double v) {
    int b = 0;
    while (b < LOOM_ENGINE_N_BUCKETS - 1 && v > loom_engine_bucket_le[b])
        b++;
    h->count[b]++;
    h->n++;
    h->sum += v;
}

const char *loom_engine_finish_str(loom_engine_finish f) {
    switch (f) {
    case LOOM_FINISH_STOP:
        return "stop";
    case LOOM_FINISH_LENGTH:
        return "length";
    default:
        return NULL;
    }
}

static void req_free(loom_engine_req *r) {
    pthread_mutex_destroy(&r->mu);
    free(r->prompt);
    free(r->toks);
    loom_sampler_free(r->saved_s);
    for (size_t i = 0; i < r->n_stop; i++)
        free(r->stop[i]);
    free(r->gen);
    free(r->pending);
    free(r->lp);
    free(r->lp_end);
    free(r->lp_pending);
    free(r);
}

void loom_engine_req_release(loom_engine_req *r) {
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) req_free(r);
}

static bool grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    char *b = realloc(*buf, c);
    if (!b) return false;
    *buf = b;
    *cap = c;
    return true;
}

/* Make room for need elements of size sz in *buf (capacity *cap). */
static bool grow_n(void **buf, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *b = realloc(*buf, c * sz);
    if (!b) return false;
    *buf = b;
    *cap = c;
    return true;
}

/* Logprob entries whose text is released with gen[0, upto): every byte of
 * it while running; at the finish, any token with a visible byte (a stop
 * string may cut one). Engine thread. */
static size_t lp_release_upto(const loom_engine_req *r, size_t upto, bool final) {
    /* Entries are contiguous: token k's text starts where k-1's ends. */
    size_t k = r->lp_released;
    while (k < r->n_lp && (r->lp_end[k] <= upto || (final && (k ? r->lp_end[k - 1] : 0) < upto)))
        k++;
    return k;
}

/* Release gen[emitted, upto) (repaired to valid UTF-8) to the reader and,
 * when finish is set, end the request. Engine thread. */
static void push(loom_engine_req *r, size_t upto, loom_engine_finish finish, const char *error) {
    size_t n = 0;
    char *fixed = NULL;
    if (upto > r->gen_emitted)
        fixed = loom_utf8_repair(r->gen + r->gen_emitted, upto - r->gen_emitted, &n);
    r->gen_emitted = upto > r->gen_emitted ? upto : r->gen_emitted;
    size_t lp_to = lp_release_upto(r, r->gen_emitted, finish != LOOM_FINISH_NONE);
    size_t n_lp = lp_to - r->lp_released;
    pthread_mutex_lock(&r->mu);
    if (fixed && n && grow(&r->pending, &r->pending_cap, r->pending_len + n + 1)) {
        memcpy(r->pending + r->pending_len, fixed, n);
        r->pending_len += n;
    }
    if (n_lp && grow_n((void **)&r->lp_pending, &r->lp_pending_cap, r->n_lp_pending + n_lp,
                       sizeof *r->lp_pending)) {
        memcpy(r->lp_pending + r->n_lp_pending, r->lp + r->lp_released, n_lp * sizeof *r->lp);
        r->n_lp_pending += n_lp;
        r->lp_released = lp_to;
    }
    if (finish != LOOM_FINISH_NONE) r->finish = finish;
    if (error) snprintf(r->error, sizeof r->error, "%s", error);
    if (r->notify && (n || n_lp || finish != LOOM_FINISH_NONE)) r->notify(r->ud);
    pthread_mutex_unlock(&r->mu);
    free(fixed);
}

/* End the request in slot i and free the slot. Engine thread. */
void loom_engine_finish_seq(loom_engine *e, int i, loom_engine_finish f, const char *error) {
    seq *q = &e->seqs[i];
    loom_engine_req *r = q->r;
    /* Free the slot before the reader can see the end: a client that has
     * its last byte finds the slot free in /metrics and for its next request. */
    loom_sampler_free(q->s);
    loom_model_slot_clear(e->m, i);
    memset(q, 0, sizeof *q);
    atomic_fetch_sub(&e->n_running, 1);
    /* A stop string was cut already; otherwise the held-back tail is final. */
    push(r, f == LOOM_FINISH_STOP ? r->gen_emitted : r->gen_len, f, error);
    loom_engine_req_release(r);
}

static bool is_eos(const loom_engine *e, int32_t t) {
    for (int k = 0; k < 4; k++)
        if (e->eos[k] >= 0 && e->eos[k] == t) return true;
    return false;
}

/* A sampled token: text, stop strings, limits. lp: its logprobs when the
 * request asked for them, else NULL; recorded: the sampler has it already
 * (a speculative step's tokens). Engine thread. */
static void on_token(loom_engine *e, int i, int32_t tok, loom_serve_logprob *lp, bool recorded) {
    seq *q = &e->seqs[i];
    loom_engine_req *r = q->r;
    atomic_fetch_add(&e->gen_tokens, 1);
    pthread_mutex_lock(&r->mu);
    r->n_gen++;
    bool first = r->n_gen == 1;
    pthread_mutex_unlock(&r->mu);
    double t = now_s();
    pthread_mutex_lock(&e->hist_mu);
    observe(first ? &e->ttft : &e->itl, t - (first ? r->t_submit : r->t_last));
    pthread_mutex_unlock(&e->hist_mu);
    r->t_last = t;
    if (!recorded) loom_sampler_accept(q->s, tok);
    q->last = tok;
    if (!loom_engine_req_push_tok(r, tok)) {
        loom_engine_finish_seq(e, i, LOOM_FINISH_ABORT, "out of memory");
        return;
    }
    if (is_eos(e, tok)) {
        loom_engine_finish_seq(e, i, LOOM_FINISH_STOP, NULL);
        return;
    }
    const char *piece = NULL;
    size_t len = 0;
    loom_token_type ty = loom_tokenizer_token_type(e->tok, tok);
    bool special = ty == LOOM_TOKEN_CONTROL || ty == LOOM_TOKEN_UNKNOWN || ty == LOOM_TOKEN_UNUSED;
    if (lp) {
        if (!grow_n((void **)&r->lp, &r->lp_cap, r->n_lp + 1, sizeof *r->lp) ||
            !(r->lp_end = realloc(r->lp_end, r->lp_cap * sizeof *r->lp_end))) {
            loom_engine_finish_seq(e, i, LOOM_FINISH_ABORT, "out of memory");
            return;
        }
        lp->text_offset = r->gen_chars;
        r->lp[r->n_lp] = *lp;
    }
    if (!special && loom_tokenizer_piece(e->tok, tok, &piece, &len) == LOOM_OK && len) {
        if (!grow(&r->gen, &r->gen_cap, r->gen_len + len)) {
            loom_engine_finish_seq(e, i, LOOM_FINISH_ABORT, "out of memory");
            return;
        }
        memcpy(r->gen + r->gen_len, piece, len);
        r->gen_len += len;
        for (size_t b = 0; b < len; b++)
            r->gen_chars += ((unsigned char)piece[b] & 0xC0) != 0x80;
    }
    if (lp) r->lp_end[r->n_lp++] = r->gen_len;
    long at = loom_stop_find(r->gen, r->gen_len, r->gen_emitted, r->stop, r->n_stop);
    if (at >= 0) {
        push(r, (size_t)at, LOOM_FINISH_NONE, NULL);
        loom_engine_finish_seq(e, i, LOOM_FINISH_STOP, NULL);
        return;
    }
    size_t safe = r->gen_len - loom_stop_hold(r->gen, r->gen_len, r->stop, r->n_stop);
    if (safe > r->gen_emitted)
        safe = r->gen_emitted + loom_utf8_sendable(r->gen + r->gen_emitted, safe - r->gen_emitted);
    bool length = (r->max_tokens >= 0 && r->n_gen >= r->max_tokens) ||
                  loom_model_slot_pos(e->m, i) >= e->n_ctx;
    if (length) {
        loom_engine_finish_seq(e, i, LOOM_FINISH_LENGTH, NULL);
        return;
    }
    if (safe > r->gen_emitted) push(r, safe, LOOM_FINISH_NONE, NULL);
}

/* Sample slot i's next token from its logits row (which the sampler
 * changes in place: logprobs read a copy of the raw row). Engine thread. */
static void sample(loom_engine *e, int i, float *row) {
    loom_engine_req *r = e->seqs[i].r;
    bool lp_on = r->n_logprobs >= 0;
    if (lp_on) memcpy(e->lp_row, row, (size_t)e->n_vocab * sizeof *row);
    int32_t t;
    if (loom_sampler_sample(e->seqs[i].s, row, &t) != LOOM_OK) {
        loom_engine_finish_seq(e, i, LOOM_FINISH_ABORT, "sampling failed");
        return;
    }
    loom_serve_logprob lp;
    if (lp_on) {
        loom_serve_logprobs(e->lp_row, e->n_vocab, t, r->n_logprobs, &lp);
        loom_tokenizer_piece(e->tok, t, &lp.tok.piece, &lp.tok.piece_len);
        for (int k = 0; k < lp.n_top; k++)
            loom_tokenizer_piece(e->tok, lp.top[k].token, &lp.top[k].piece, &lp.top[k].piece_len);
    }
    on_token(e, i, t, lp_on ? &lp : NULL, false);
}

/* Speculative decoding for slot i, the only sequence decoding: a greedy
 * request without logprobs (sampled ones would draw different tokens for
 * their seed depending on their neighbours), when the KV pool has room for
 * every drafted row. false: not done, the caller decodes as usual. */
static bool spec_step(loom_engine *e, int i) {
    seq *q = &e->seqs[i];
    loom_engine_req *r = q->r;
    if (!e->spec || r->sp.temperature > 0.0f || r->n_logprobs >= 0) return false;
    loom_kv_block_stats ks;
    loom_model_kv_block_stats(e->m, &ks);
    if (loom_model_slot_blocks_needed(e->m, i, LOOM_SPEC_MAX_DRAFT + 1) > ks.n_free + ks.n_cached)
        return false;
    int64_t left = r->max_tokens >= 0 ? r->max_tokens - r->n_gen : INT32_MAX;
    int32_t out[LOOM_SPEC_MAX_DRAFT + 1], n_out = 0;
    char err[256];
    loom_spec_stats a, b;
    loom_spec_get_stats(e->spec, &a);
    if (loom_spec_step(e->spec, i, q->s, r->toks, r->n_toks,
                       (int32_t)(left < INT32_MAX ? left : INT32_MAX), out, &n_out, err,
                       sizeof err) != LOOM_OK) {
        loom_engine_finish_seq(e, i, LOOM_FINISH_ABORT, err);
        return true;
    }
    loom_spec_get_stats(e->spec, &b);
    atomic_fetch_add(&e->spec_drafted, (long long)(b.n_drafted - a.n_drafted));
    atomic_fetch_add(&e->spec_accepted, (long long)(b.n_accepted - a.n_accepted));
    /* The tokens one by one, as plain steps would give them; a stop ends
     * the request (and frees the slot) before the rest. */
    for (int32_t j = 0; j < n_out && e->seqs[i].r == r; j++)
        on_token(e, i, out[j], NULL, true);
    return true;
}

/* Admit waiting requests into free slots and drop cancelled ones. Caller
 * holds e->mu. */
static void schedule(loom_engine *e) {
    for (int i = 0; i < e->n_slots; i++)
        if (e->seqs[i].r && atomic_load(&e->seqs[i].r->cancelled))
            loom_engine_finish_seq(e, i, LOOM_FINISH_ABORT, NULL);
    /* Cancelled requests still waiting leave the queue now (queue depth is
     * a metric; a client that gave up is not waiting). */
    loom_engine_req **link = &e->wait_head, *prev = NULL;
    while (*link) {
        loom_engine_req *r = *link;
        if (atomic_load(&r->cancelled)) {
            *link = r->next;
            e->n_waiting--;
            push(r, 0, LOOM_FINISH_ABORT, NULL);
            loom_engine_req_release(r);
        } else {
            prev = r;
            link = &r->next;
        }
    }
    e->wait_tail = prev;
    for (int i = 0; i < e->n_slots && e->wait_head; i++) {
        if (e->seqs[i].r) continue;
        loom_engine_req *r = e->wait_head;
        e->wait_head = r->next;
        if (!e->wait_head) e->wait_tail = NULL;
        e->n_waiting--;
        r->next = NULL;
        seq *q = &e->seqs[i];
        if (!loom_engine_blocks_admit_ok(e, r)) { /* not now: leave it at the head */
            r->next = e->wait_head;
            e->wait_head = r;
            if (!e->wait_tail) e->wait_tail = r;
            e->n_waiting++;
            break;
        }
        /* A preempted request resumes with its own sampler (same RNG stream,
         * same penalty history). */
        q->s = r->saved_s;
        r->saved_s = NULL;
        if (!q->s && loom_sampler_new(&r->sp, e->n_vocab, &q->s) != LOOM_OK) {
            push(r, 0, LOOM_FINISH_ABORT, "cannot create the sampler");
            loom_engine_req_release(r);
            i--;
            continue;
        }
        loom_model_slot_clear(e->m, i);
        q->r = r;
        q->decoding = false;
        if (r->order < 0) r->order = e->n_admitted++; /* kept across preemptions */
        q->order = r->order;
        /* Everything known so far is fed again: the prompt, and after a
         * preemption the tokens generated before it (recompute). Cached
         * blocks of its prefix are attached instead of computed. */
        q->n_feed = r->n_toks;
        q->n_done = loom_engine_blocks_attach_prefix(e, i, r->toks, r->n_toks);
        e->n_running++;
    }
}

static void fail_all(loom_engine *e, const int *which, int n, const char *err) {
    for (int k = 0; k < n; k++)
        if (e->seqs[which[k]].r) loom_engine_finish_seq(e, which[k], LOOM_FINISH_ABORT, err);
}

/* Prompt tokens of q's next prefill chunk. */
static int chunk_of(const loom_engine *e, const seq *q) {
    size_t left = q->n_feed - q->n_done;
    return left < (size_t)e->chunk ? (int)left : e->chunk;
}

/* One step: a decode forward for every sequence past its prompt, then one
 * prefill forward (see below). */
static void step(loom_engine *e) {
    char err[256];
    loom_engine_blocks_room_decode(e); /* may preempt the newest sequences */
    int n = 0;
    for (int i = 0; i < e->n_slots; i++)
        if (e->seqs[i].r && e->seqs[i].decoding) {
            e->idx[n] = i;
            e->slots[n] = i;
            e->toks[n] = e->seqs[i].last;
            n++;
        }
    if (n == 1 && spec_step(e, e->idx[0])) {
        /* done: one verification forward gave this sequence 1.. tokens */
    } else if (n) {
        loom_batch b = {.n_seq = n, .n_tokens = 1, .slots = e->slots, .tokens = e->toks};
        if (loom_model_decode(e->m, &b, e->logits, err, sizeof err) != LOOM_OK) {
            fail_all(e, e->idx, n, err);
        } else {
            for (int k = 0; k < n; k++)
                sample(e, e->idx[k], e->logits + (size_t)k * (size_t)e->n_vocab);
        }
    }
    /* Prefill: the oldest sequence still in its prompt, plus any others whose
     * next chunk has the same length while the step stays within one chunk
     * of prompt tokens (loom_batch needs one length for all): clients that
     * arrive together share a forward instead of queueing behind each other. */
    int p = -1, k = 0, len = 0;
    for (;;) {
        p = -1;
        for (int i = 0; i < e->n_slots; i++)
            if (e->seqs[i].r && !e->seqs[i].decoding &&
                (p < 0 || e->seqs[i].order < e->seqs[p].order))
                p = i;
        if (p < 0) break;
        len = chunk_of(e, &e->seqs[p]);
        k = 0;
        e->idx[k++] = p;
        for (int i = 0; i < e->n_slots; i++)
            if (i != p && e->seqs[i].r && !e->seqs[i].decoding && chunk_of(e, &e->seqs[i]) == len &&
                (k + 1) * len <= e->chunk)
                e->idx[k++] = i;
        /* Blocks for the chunk, or fewer companions, or preempt (the group
         * is rebuilt: the newest sequence may have been in it). */
        if (loom_engine_blocks_room_prefill(e, e->idx, &k, len)) break;
    }
    if (p >= 0) {
        for (int j = 0; j < k; j++) {
            seq *q = &e->seqs[e->idx[j]];
            e->slots[j] = e->idx[j];
            memcpy(e->ptoks + (size_t)j * (size_t)len, q->r->toks + q->n_done,
                   (size_t)len * sizeof *e->ptoks);
        }
        loom_batch b = {.n_seq = k, .n_tokens = len, .slots = e->slots, .tokens = e->ptoks};
        if (loom_model_decode(e->m, &b, e->logits, err, sizeof err) != LOOM_OK) {
            fail_all(e, e->idx, k, err);
        } else {
            atomic_fetch_add(&e->prompt_tokens, (long long)k * len);
            for (int j = 0; j < k; j++) {
                int i = e->idx[j];
                seq *q = &e->seqs[i];
                q->n_done += (size_t)len;
                if (q->n_done < q->n_feed) continue;
                q->decoding = true;
                sample(e, i, e->logits + (size_t)j * (size_t)e->n_vocab);
            }
        }
    }
    atomic_fetch_add(&e->steps, 1);
    loom_engine_blocks_publish(e);
    int nb = 0, nr = 0;
    loom_model_graph_stats(e->m, &nb, &nr);
    atomic_store(&e->graph_builds, nb);
    atomic_store(&e->graph_runs, nr);
}

static void *engine_main(void *arg) {
    loom_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        schedule(e);
        loom_engine_blocks_publish(e); /* admissions and cancels change the counts */
        if (e->stopping) break;
        /* One embedding text per turn, then a step: embeddings and streams
         * take turns instead of either waiting for the other to finish. */
        if (e->emb_head) {
            loom_engine_embed_turn(e);
            if (!e->n_running) continue;
        }
        if (!e->n_running) {
            pthread_cond_wait(&e->cv, &e->mu);
            continue;
        }
        /* The model and the slot table are the engine thread's alone; the
         * lock guards only the waiting queue, so submit and stats never wait
         * for a forward pass. */
        pthread_mutex_unlock(&e->mu);
        step(e);
        pthread_mutex_lock(&e->mu);
    }
    /* Stopping: everything still queued or running ends as aborted. */
    for (int i = 0; i < e->n_slots; i++)
        if (e->seqs[i].r) loom_engine_finish_seq(e, i, LOOM_FINISH_ABORT, "server stopping");
    while (e->wait_head) {
        loom_engine_req *r = e->wait_head;
        e->wait_head = r->next;
        push(r, 0, LOOM_FINISH_ABORT, "server stopping");
        loom_engine_req_release(r);
    }
    e->wait_tail = NULL;
    e->n_waiting = 0;
    loom_engine_embed_abort_all(e);
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

loom_status loom_engine_new(loom_model *m, const loom_engine_params *p, loom_engine **out,
                            char *err, size_t err_n) {
    *out = NULL;
    const loom_tokenizer *tok = loom_model_tokenizer(m);
    if (!tok) {
        snprintf(err, err_n, "the model has no tokenizer: cannot serve text");
        return LOOM_ERR_INVALID_ARG;
    }
    loom_engine *e = calloc(1, sizeof *e);
    if (!e) return LOOM_ERR_OOM;
    e->m = m;
    e->tok = tok;
    e->n_slots = loom_model_n_slots(m);
    e->n_ctx = loom_model_n_ctx(m);
    e->n_vocab = loom_model_config_of(m)->vocab_size;
    e->chunk = p && p->prefill_chunk > 0 ? p->prefill_chunk : 128;
    e->no_prefix_cache = p && p->no_prefix_cache;
    e->spec = p ? p->spec : NULL;
    const loom_model_config *c = loom_model_config_of(m);
    e->eos[0] = c->eos_id;
    e->eos[1] = c->eot_id;
    e->eos[2] = loom_tokenizer_eos(tok);
    e->eos[3] = loom_tokenizer_eot(tok);
    size_t ns = (size_t)e->n_slots;
    e->seqs = calloc(ns, sizeof *e->seqs);
    e->logits = malloc(ns * (size_t)e->n_vocab * sizeof *e->logits);
    e->lp_row = malloc((size_t)e->n_vocab * sizeof *e->lp_row);
    e->slots = calloc(ns, sizeof *e->slots);
    e->toks = calloc(ns, sizeof *e->toks);
    e->idx = calloc(ns, sizeof *e->idx);
    e->ptoks = malloc(ns * (size_t)e->chunk * sizeof *e->ptoks);
    if (!e->seqs || !e->logits || !e->lp_row || !e->slots || !e->toks || !e->idx || !e->ptoks) {
        loom_engine_free(e);
        return LOOM_ERR_OOM;
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->hist_mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    pthread_cond_init(&e->emb_cv, NULL);
    atomic_init(&e->n_running, 0);
    if (pthread_create(&e->th, NULL, engine_main, e) != 0) {
        snprintf(err, err_n, "cannot start the engine thread");
        /* not started: loom_engine_free frees the arrays only */
        pthread_mutex_destroy(&e->mu);
        pthread_mutex_destroy(&e->hist_mu);
        pthread_cond_destroy(&e->cv);
        pthread_cond_destroy(&e->emb_cv);
        loom_engine_free(e);
        return LOOM_ERR_INTERNAL;
    }
    e->started = true;
    *out = e;
    return LOOM_OK;
}

void loom_engine_stop(loom_engine *e) {
    if (!e || !e->started || e->joined) return;
    pthread_mutex_lock(&e->mu);
    e->stopping = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->th, NULL);
    e->joined = true;
}

void loom_engine_free(loom_engine *e) {
    if (!e) return;
    if (e->started) {
        loom_engine_stop(e);
        pthread_mutex_destroy(&e->mu);
        pthread_mutex_destroy(&e->hist_mu);
        pthread_cond_destroy(&e->cv);
        pthread_cond_destroy(&e->emb_cv);
    }
    free(e->seqs);
    free(e->logits);
    free(e->lp_row);
    free(e->slots);
    free(e->toks);
    free(e->idx);
    free(e->ptoks);
    free(e);
}

loom_status loom_engine_submit(loom_engine *e, const loom_engine_input *in,
                               loom_engine_notify_fn notify, void *ud, loom_engine_req **out) {
    *out = NULL;
    if (!in->n_prompt || (int64_t)in->n_prompt >= e->n_ctx || in->n_stop > LOOM_SERVE_MAX_STOP)
        return LOOM_ERR_INVALID_ARG;
    loom_engine_req *r = calloc(1, sizeof *r);
    if (!r) return LOOM_ERR_OOM;
    pthread_mutex_init(&r->mu, NULL);
    atomic_init(&r->refs, 2); /* the caller's and the engine's */
    atomic_init(&r->cancelled, false);
    r->prompt = malloc(in->n_prompt * sizeof *r->prompt);
    if (!r->prompt) {
        req_free(r);
        return LOOM_ERR_OOM;
    }
    memcpy(r->prompt, in->prompt, in->n_prompt * sizeof *r->prompt);
    r->n_prompt = in->n_prompt;
    r->order = -1;
    for (size_t t = 0; t < in->n_prompt; t++)
        if (!loom_engine_req_push_tok(r, in->prompt[t])) {
            req_free(r);
            return LOOM_ERR_OOM;
        }
    r->max_tokens = in->max_tokens;
    r->sp = in->sampling;
    r->n_logprobs =
        in->n_logprobs > LOOM_SERVE_MAX_TOP_LOGPROBS ? LOOM_SERVE_MAX_TOP_LOGPROBS : in->n_logprobs;
    for (size_t i = 0; i < in->n_stop; i++) {
        size_t l = strlen(in->stop[i]);
        r->stop[i] = malloc(l + 1);
        if (!r->stop[i]) {
            req_free(r);
            return LOOM_ERR_OOM;
        }
        memcpy(r->stop[i], in->stop[i], l + 1);
        r->n_stop++;
    }
    r->notify = notify;
    r->ud = ud;
    r->t_submit = now_s();
    pthread_mutex_lock(&e->mu);
    if (e->stopping) {
        pthread_mutex_unlock(&e->mu);
        req_free(r);
        return LOOM_ERR_UNAVAILABLE;
    }
    if (e->wait_tail)
        e->wait_tail->next = r;
    else
        e->wait_head = r;
    e->wait_tail = r;
    e->n_waiting++;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    *out = r;
    return LOOM_OK;
}

bool loom_engine_take(loom_engine_req *r, loom_engine_out *out, void (*on_empty)(void *ud),
                      void *ud) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&r->mu);
    bool any = r->pending_len > 0 || r->n_lp_pending > 0 || r->finish != LOOM_FINISH_NONE;
    if (r->n_lp_pending) {
        out->lp = r->lp_pending;
        out->n_lp = r->n_lp_pending;
        r->lp_pending = NULL;
        r->n_lp_pending = r->lp_pending_cap = 0;
    }
    if (r->pending_len) {
        out->text = r->pending;
        out->len = r->pending_len;
        r->pending = NULL;
        r->pending_len = r->pending_cap = 0;
        out->text[out->len] = 0; /* grow() always leaves room for it */
    }
    if (any) {
        out->first = !r->taken_any;
        r->taken_any = true;
    } else if (on_empty) {
        on_empty(ud);
    }
    out->finish = r->finish;
    out->n_prompt = (int64_t)r->n_prompt;
    out->n_gen = r->n_gen;
    snprintf(out->error, sizeof out->error, "%s", r->error);
    pthread_mutex_unlock(&r->mu);
    return any;
}

void loom_engine_cancel(loom_engine_req *r) {
    pthread_mutex_lock(&r->mu);
    r->notify = NULL;
    pthread_mutex_unlock(&r->mu);
    atomic_store(&r->cancelled, true);
    /* The engine sees the flag at its next step; when idle it has nothing
     * of r's to free except a queue entry, dropped at the next admission. */
}

void loom_engine_get_stats(loom_engine *e, loom_engine_stats *s) {
    pthread_mutex_lock(&e->mu);
    s->n_waiting = e->n_waiting;
    s->n_running = atomic_load(&e->n_running);
    s->n_slots = e->n_slots;
    pthread_mutex_unlock(&e->mu);
    s->prompt_tokens = atomic_load(&e->prompt_tokens);
    s->gen_tokens = atomic_load(&e->gen_tokens);
    s->steps = atomic_load(&e->steps);
    s->graph_builds = atomic_load(&e->graph_builds);
    s->graph_runs = atomic_load(&e->graph_runs);
    s->spec_drafted = atomic_load(&e->spec_drafted);
    s->spec_accepted = atomic_load(&e->spec_accepted);
    loom_engine_blocks_stats(e, s);
    pthread_mutex_lock(&e->hist_mu);
    s->ttft = e->ttft;
    s->itl = e->itl;
    pthread_mutex_unlock(&e->hist_mu);
}
