/* serve/http_stream.c - a generation response: MHD's content reader takes
 * the request's new text from the engine, formats it (SSE chunks or one JSON
 * body) and suspends the connection while there is none; the engine's
 * notify resumes it (see server.h). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "serve/http_internal.h"

/* Engine thread, request lock held: more output; wake the connection. */
void loom_http_on_notify(void *ud) {
    conn_ctx *c = ud;
    if (c->suspended) {
        c->suspended = false;
        MHD_resume_connection(c->conn);
    }
}

/* MHD thread, request lock held: nothing to send yet; sleep until notified. */
static void on_empty(void *ud) {
    conn_ctx *c = ud;
    c->suspended = true;
    MHD_suspend_connection(c->conn);
}

static void set_out(conn_ctx *c, char *s) {
    free(c->out);
    c->out = s;
    c->out_len = s ? strlen(s) : 0;
    c->out_off = 0;
}

/* Append to c->out (which MHD has fully taken when this is called). */
static void add_out(conn_ctx *c, char *s) {
    if (!s) return;
    if (!c->out) {
        set_out(c, s);
        return;
    }
    size_t n = strlen(s);
    char *b = realloc(c->out, c->out_len + n + 1);
    if (b) {
        memcpy(b + c->out_len, s, n + 1);
        c->out = b;
        c->out_len += n;
    }
    free(s);
}

static char *dup_s(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

/* Turn what the engine produced into bytes for the client. */
static void format_output(conn_ctx *c, loom_engine_out *o) {
    const char *finish = loom_engine_finish_str(o->finish);
    bool done = o->finish != LOOM_FINISH_NONE;
    c->n_prompt = o->n_prompt;
    c->n_gen = o->n_gen;
    if (done) c->finish = finish ? finish : "abort";
    loom_serve_lps lps = {o->lp, o->n_lp, c->lp_on};
    const loom_serve_lps none = {NULL, 0, false}; /* the finish chunk: "logprobs": null */
    if (c->stream) {
        bool chat = c->meta.kind == LOOM_SERVE_CHAT;
        if (o->len || o->n_lp || (o->first && chat))
            add_out(c, loom_http_rag_attach(loom_serve_sse_chunk(&c->meta, o->text ? o->text : "",
                                                                 o->len, o->first && chat, NULL,
                                                                 c->include_usage, lps),
                                            o->first ? c->rag_sources : NULL));
        if (done) {
            if (finish) {
                add_out(c, loom_serve_sse_chunk(&c->meta, "", 0, false, finish, c->include_usage,
                                                none));
                if (c->include_usage)
                    add_out(c, loom_serve_sse_usage(&c->meta, o->n_prompt, o->n_gen));
            } else {
                loom_serve_error e;
                loom_serve_error_set(&e, 500, "server_error", NULL, NULL, "generation failed: %s",
                                     o->error[0] ? o->error : "aborted");
                char *j = loom_serve_error_json(&e);
                size_t n = j ? strlen(j) : 0;
                char *s = j ? malloc(n + 9) : NULL;
                if (s) snprintf(s, n + 9, "data: %s\n\n", j);
                free(j);
                add_out(c, s);
            }
            add_out(c, dup_s(loom_serve_sse_done()));
            c->finished = true;
        }
    } else {
        if (o->n_lp) {
            loom_serve_logprob *b = realloc(c->lp_acc, (c->n_lp_acc + o->n_lp) * sizeof *b);
            if (b) {
                memcpy(b + c->n_lp_acc, o->lp, o->n_lp * sizeof *b);
                c->lp_acc = b;
                c->n_lp_acc += o->n_lp;
            }
        }
        if (o->len) {
            char *b = realloc(c->acc, c->acc_len + o->len + 1);
            if (b) {
                memcpy(b + c->acc_len, o->text, o->len);
                c->acc = b;
                c->acc_len += o->len;
                c->acc[c->acc_len] = 0;
            }
        }
        if (done) {
            if (finish) {
                loom_serve_lps all = {c->lp_acc, c->n_lp_acc, c->lp_on};
                set_out(c, loom_http_rag_attach(
                               loom_serve_response_json(&c->meta, c->acc ? c->acc : "", c->acc_len,
                                                        finish, o->n_prompt, o->n_gen, all),
                               c->rag_sources));
            } else {
                loom_serve_error e;
                loom_serve_error_set(&e, 500, "server_error", NULL, NULL, "generation failed: %s",
                                     o->error[0] ? o->error : "aborted");
                set_out(c, loom_serve_error_json(&e));
            }
            c->finished = true;
        }
    }
}

/* Has the client closed its end? A suspended connection is not watched by
 * MHD, and a non-streaming response writes nothing until the end, so the
 * reader looks itself each time the engine wakes it (once per token): an
 * orderly close reads as 0 bytes, a reset as an error. */
static bool peer_gone(conn_ctx *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    char b;
    ssize_t n = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

ssize_t loom_http_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    conn_ctx *c = cls;
    for (;;) {
        if (c->out_off < c->out_len) {
            size_t n = c->out_len - c->out_off;
            if (n > max) n = max;
            memcpy(buf, c->out + c->out_off, n);
            c->out_off += n;
            return (ssize_t)n;
        }
        set_out(c, NULL);
        if (c->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        if (peer_gone(c)) {
            c->gone = true;
            return MHD_CONTENT_READER_END_WITH_ERROR; /* frees the slot */
        }
        loom_engine_out o;
        if (!loom_engine_take(c->req, &o, on_empty, c)) return 0; /* suspended */
        format_output(c, &o);
        free(o.text);
        free(o.lp);
    }
}

void loom_http_reader_free(void *cls) {
    loom_http_ctx_unref(cls);
}
