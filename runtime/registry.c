/* runtime/registry.c - the backend registry: the only process-wide state in loom.
 *
 * Entries are kept in priority order (highest first, ties in registration
 * order). Each entry owns its loom_backend (handed out by pointer; the address
 * stays valid until loom_registry_shutdown) and, for plugins, the dlopen
 * handle, which stays open until shutdown because the backend's vtable and
 * name strings live inside the plugin. A plugin that could not produce a
 * vtable (dlopen failed, no entry symbol, wrong ABI, wrong name) gets a stub
 * vtable with only a name (priority 0: it has no vtable to say otherwise), so
 * it can still be listed with its reason.
 *
 * Discovery (ADR 0001): the built-ins come from backends/builtin.h; plugins
 * are found by name alone, every libloom-backend-<name>.so in the plugin
 * directory ($LOOM_PLUGIN_DIR, else the directory of libloom), loaded in file
 * name order, then each file of $LOOM_EXTRA_PLUGINS. No backend is named
 * here. LOOM_PLUGIN_NAMES (set by CMake from the backends/<name>/ folders
 * that have a CMakeLists.txt) only lets a plugin this build knows of but did
 * not build be listed as "not found", so `loom devices` explains it.
 *
 * Several devices of one kind (ADR 0042): a table with device_count gets
 * one entry per device. The first entry is initialised as usual (device 0)
 * and asked how many devices there are; entries for devices 1..n-1 follow
 * it, each with its own loom_backend (device set before init, its own ctx).
 * They share the table and the dlopen handle, which the first entry owns;
 * shutdown runs every backend's shutdown before closing any handle. Names:
 * "NAME" for a backend of one device, "NAME:I" for each device otherwise;
 * lookups accept "NAME" and "NAME:0" for device 0 either way. Nothing here
 * knows which backends have several devices.
 *
 * All state is guarded by one mutex; backend init runs under it, which is
 * fine because registration happens once per process. */
#define _GNU_SOURCE /* dladdr */

#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/builtin.h"
#include "loom/runtime.h"

#define LOOM_WHY_MAX 256

_Static_assert(sizeof(void *) == sizeof(loom_backend_plugin_entry_fn),
               "dlsym results must fit a function pointer");

typedef struct reg_entry {
    loom_backend be;         /* first member: handed out to callers */
    loom_backend_iface stub; /* used when a plugin gave no usable vtable */
    char stub_name[32];
    bool available;
    char why[LOOM_WHY_MAX];
    void *dl; /* dlopen handle, NULL for built-ins and loom_registry_add */
} reg_entry;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static reg_entry **g_entries;
static int g_n, g_cap;
static bool g_inited;

#ifndef LOOM_PLUGIN_NAMES
#define LOOM_PLUGIN_NAMES "" /* colon-separated; see the comment at the top */
#endif

#define PLUGIN_PREFIX "libloom-backend-"
#define PLUGIN_SUFFIX ".so"

/* ---------------- entries (callers hold g_mu) ---------------- */

/* "NAME" or "NAME:I" (I decimal, below LOOM_BACKEND_MAX_DEVICES): the
 * entry of device I (0 without ":I") of the backend whose table is NAME. */
static reg_entry *find_locked(const char *name) {
    size_t len = strcspn(name, ":");
    int dev = 0;
    if (name[len]) {
        const char *p = name + len + 1;
        if (!*p || strlen(p) > 2) return NULL;
        for (; *p; p++) {
            if (*p < '0' || *p > '9') return NULL;
            dev = dev * 10 + (*p - '0');
        }
    }
    for (int i = 0; i < g_n; i++) {
        const loom_backend *be = &g_entries[i]->be;
        if (strlen(be->iface->name) == len && strncmp(be->iface->name, name, len) == 0 &&
            be->device == dev)
            return g_entries[i];
    }
    return NULL;
}

/* Keep the one-line promise: dlerror and init messages may contain newlines. */
static void one_line(char *s) {
    for (; *s; s++)
        if (*s == '\n' || *s == '\r') *s = ' ';
}

/* Insert e after every entry of equal or higher priority. Takes ownership. */
static loom_status insert_locked(reg_entry *e) {
    if (g_n == g_cap) {
        int cap = g_cap ? g_cap * 2 : 8;
        reg_entry **p = realloc(g_entries, (size_t)cap * sizeof *p);
        if (!p) return LOOM_ERR_OOM;
        g_entries = p;
        g_cap = cap;
    }
    int pos = g_n;
    while (pos > 0 && g_entries[pos - 1]->be.iface->priority < e->be.iface->priority)
        pos--;
    memmove(&g_entries[pos + 1], &g_entries[pos], (size_t)(g_n - pos) * sizeof *g_entries);
    g_entries[pos] = e;
    g_n++;
    for (int i = 0; i < g_n; i++)
        g_entries[i]->be.index = i;
    return LOOM_OK;
}

/* Register device `device` of iface, running its init; an init failure
 * leaves it listed as unavailable. dl (may be NULL) becomes owned by the
 * entry. *out (may be NULL) gets the entry. */
static loom_status add_device_locked(const loom_backend_iface *iface, void *dl, int device,
                                     reg_entry **out) {
    reg_entry *e = calloc(1, sizeof *e);
    if (!e) return LOOM_ERR_OOM;
    e->be.iface = iface;
    e->be.device = device;
    snprintf(e->be.name, sizeof e->be.name, "%s", iface->name);
    e->dl = dl;
    /* Callers call required slots unchecked: a table missing one is listed,
     * never initialised or handed out. */
    const char *missing = loom_backend_missing_slot(iface);
    loom_status s = LOOM_ERR_UNAVAILABLE;
    if (missing)
        snprintf(e->why, sizeof e->why,
                 "backend table has no %s (a required slot, see loom/backend.h)", missing);
    else
        s = iface->init(&e->be, e->why, sizeof e->why);
    e->available = s == LOOM_OK;
    if (e->available)
        e->why[0] = '\0';
    else if (!e->why[0])
        snprintf(e->why, sizeof e->why, "init failed: %s", loom_status_str(s));
    one_line(e->why);
    s = insert_locked(e);
    if (s != LOOM_OK) {
        if (e->available && iface->shutdown) iface->shutdown(&e->be);
        free(e);
        return s;
    }
    if (out) *out = e;
    return LOOM_OK;
}

/* Register iface: device 0, then, when its table says it drives several,
 * one entry per further device (named NAME:I, device 0 renamed NAME:0). */
static loom_status add_locked(const loom_backend_iface *iface, void *dl) {
    if (find_locked(iface->name)) return LOOM_ERR_INVALID_ARG;
    reg_entry *first = NULL;
    LOOM_TRY(add_device_locked(iface, dl, 0, &first));
    if (!first->available || !iface->device_count) return LOOM_OK;
    int n = iface->device_count(&first->be);
    if (n > LOOM_BACKEND_MAX_DEVICES) n = LOOM_BACKEND_MAX_DEVICES;
    if (n <= 1) return LOOM_OK;
    snprintf(first->be.name, sizeof first->be.name, "%s:0", iface->name);
    for (int d = 1; d < n; d++) {
        reg_entry *e = NULL;
        /* On OOM the devices registered so far stay usable. */
        if (add_device_locked(iface, NULL, d, &e) != LOOM_OK) break;
        snprintf(e->be.name, sizeof e->be.name, "%s:%d", iface->name, d);
    }
    return LOOM_OK;
}

/* List a plugin that produced no usable vtable, under a name derived from
 * its file name ("libloom-backend-cuda.so" -> "cuda"). */
static void add_stub_locked(const char *path, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void add_stub_locked(const char *path, const char *fmt, ...) {
    reg_entry *e = calloc(1, sizeof *e);
    if (!e) return;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strncmp(base, "lib", 3) == 0) base += 3;
    if (strncmp(base, "loom-backend-", 13) == 0) base += 13;
    snprintf(e->stub_name, sizeof e->stub_name, "%.*s", (int)strcspn(base, "."), base);
    if (find_locked(e->stub_name)) {
        free(e); /* a working backend of that name is already listed */
        return;
    }
    e->stub.abi_version = LOOM_BACKEND_ABI_VERSION;
    e->stub.name = e->stub_name;
    e->be.iface = &e->stub;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->why, sizeof e->why, fmt, ap);
    va_end(ap);
    one_line(e->why);
    if (insert_locked(e) != LOOM_OK) free(e);
}

/* expect: the backend name the file name promises (scanned plugins), or
 * NULL ($LOOM_EXTRA_PLUGINS, any file name). A missing file is skipped. */
static void load_plugin_locked(const char *path, const char *expect) {
    if (access(path, F_OK) != 0) return;
    dlerror();
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        const char *msg = dlerror();
        add_stub_locked(path, "cannot load %s: %s", path, msg ? msg : "unknown dlopen error");
        return;
    }
    /* dlsym returns void *; POSIX guarantees it can hold a function pointer.
     * memcpy converts without the object-to-function pointer cast ISO C lacks. */
    void *sym = dlsym(dl, LOOM_BACKEND_PLUGIN_ENTRY);
    loom_backend_plugin_entry_fn entry = NULL;
    if (sym) memcpy(&entry, &sym, sizeof entry);
    if (!entry) {
        dlclose(dl);
        add_stub_locked(path, "%s has no %s symbol", path, LOOM_BACKEND_PLUGIN_ENTRY);
        return;
    }
    const loom_backend_iface *iface = entry();
    if (!iface || !iface->name) {
        dlclose(dl);
        add_stub_locked(path, "%s returned no backend table", path);
        return;
    }
    if (iface->abi_version != LOOM_BACKEND_ABI_VERSION) {
        int v = iface->abi_version;
        dlclose(dl);
        add_stub_locked(path, "%s has backend ABI version %d, libloom expects %d", path, v,
                        LOOM_BACKEND_ABI_VERSION);
        return;
    }
    /* The naming rule is the only contract between the file system and the
     * registry; a copied backend that kept its template's name would shadow
     * the template (or be shadowed), so say so instead. */
    if (expect && strcmp(iface->name, expect) != 0) {
        char got[32];
        snprintf(got, sizeof got, "%s", iface->name);
        dlclose(dl);
        add_stub_locked(path, "%s names its backend '%s'; its file name says '%s'", path, got,
                        expect);
        return;
    }
    if (add_locked(iface, dl) != LOOM_OK)
        dlclose(dl); /* duplicate name (same plugin found twice) or OOM */
}

/* Directory holding libloom itself, found through one of our own symbols. */
static bool own_dir(char *out, size_t n) {
    Dl_info info;
    if (!dladdr((void *)&loom_registry_init, &info) || !info.dli_fname) return false;
    const char *slash = strrchr(info.dli_fname, '/');
    if (!slash)
        snprintf(out, n, ".");
    else
        snprintf(out, n, "%.*s", (int)(slash - info.dli_fname), info.dli_fname);
    return true;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Load every PLUGIN_PREFIX<name>PLUGIN_SUFFIX in dir, in name order. */
static void scan_dir_locked(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    char **names = NULL;
    size_t n = 0, cap = 0;
    const size_t pre = strlen(PLUGIN_PREFIX), suf = strlen(PLUGIN_SUFFIX);
    for (struct dirent *de; (de = readdir(d));) {
        size_t len = strlen(de->d_name);
        if (len <= pre + suf || strncmp(de->d_name, PLUGIN_PREFIX, pre) != 0 ||
            strcmp(de->d_name + len - suf, PLUGIN_SUFFIX) != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            char **p = realloc(names, cap * sizeof *p);
            if (!p) break;
            names = p;
        }
        if (!(names[n] = strdup(de->d_name))) break;
        n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char path[4352], name[32];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        snprintf(name, sizeof name, "%.*s", (int)(strlen(names[i]) - pre - suf), names[i] + pre);
        load_plugin_locked(path, name);
        free(names[i]);
    }
    free(names);
}

/* A plugin this build knows of (LOOM_PLUGIN_NAMES) that nothing provided. */
static void list_missing_locked(const char *dir) {
    const char *p = LOOM_PLUGIN_NAMES;
    while (*p) {
        size_t len = strcspn(p, ":");
        if (len > 0 && len < 32) {
            char name[32], path[4352];
            snprintf(name, sizeof name, "%.*s", (int)len, p);
            snprintf(path, sizeof path, "%s/" PLUGIN_PREFIX "%s" PLUGIN_SUFFIX, dir, name);
            if (!find_locked(name))
                add_stub_locked(path,
                                "plugin %s not found (not built here: configure with its "
                                "toolkit installed, or set LOOM_PLUGIN_DIR)",
                                path);
        }
        p += len;
        if (*p == ':') p++;
    }
}

static void init_locked(void) {
    if (g_inited) return;
    g_inited = true;
    for (const loom_backend_plugin_entry_fn *f = loom_builtin_backends(); *f; f++)
        add_locked((*f)(), NULL);

    char dir[4096];
    const char *env = getenv("LOOM_PLUGIN_DIR");
    bool have_dir = true;
    if (env && *env)
        snprintf(dir, sizeof dir, "%s", env);
    else
        have_dir = own_dir(dir, sizeof dir);
    if (have_dir) scan_dir_locked(dir);

    const char *extra = getenv("LOOM_EXTRA_PLUGINS");
    while (extra && *extra) {
        size_t len = strcspn(extra, ":");
        if (len > 0 && len < 4096) {
            char path[4096];
            memcpy(path, extra, len);
            path[len] = '\0';
            load_plugin_locked(path, NULL);
        }
        extra += len;
        if (*extra == ':') extra++;
    }
    /* Last, so a plugin given through $LOOM_EXTRA_PLUGINS is not reported
     * missing first. */
    if (have_dir) list_missing_locked(dir);
}

/* ---------------- public API ---------------- */

loom_status loom_registry_init(void) {
    pthread_mutex_lock(&g_mu);
    init_locked();
    pthread_mutex_unlock(&g_mu);
    return LOOM_OK;
}

loom_status loom_registry_add(const loom_backend_iface *iface) {
    if (!iface || !iface->name || !*iface->name || iface->abi_version != LOOM_BACKEND_ABI_VERSION)
        return LOOM_ERR_INVALID_ARG;
    pthread_mutex_lock(&g_mu);
    loom_status s = add_locked(iface, NULL);
    pthread_mutex_unlock(&g_mu);
    return s;
}

void loom_registry_shutdown(void) {
    pthread_mutex_lock(&g_mu);
    /* Every shutdown first: the devices of a plugin share its handle, which
     * only its first entry holds. */
    for (int i = 0; i < g_n; i++) {
        reg_entry *e = g_entries[i];
        if (e->available && e->be.iface->shutdown) e->be.iface->shutdown(&e->be);
    }
    for (int i = 0; i < g_n; i++) {
        if (g_entries[i]->dl) dlclose(g_entries[i]->dl);
        free(g_entries[i]);
    }
    free(g_entries);
    g_entries = NULL;
    g_n = g_cap = 0;
    g_inited = false;
    pthread_mutex_unlock(&g_mu);
}

int loom_registry_count(void) {
    pthread_mutex_lock(&g_mu);
    init_locked();
    int n = g_n;
    pthread_mutex_unlock(&g_mu);
    return n;
}

loom_backend *loom_registry_get(int i) {
    pthread_mutex_lock(&g_mu);
    init_locked();
    loom_backend *be = i >= 0 && i < g_n ? &g_entries[i]->be : NULL;
    pthread_mutex_unlock(&g_mu);
    return be;
}

bool loom_registry_available(int i) {
    pthread_mutex_lock(&g_mu);
    init_locked();
    bool ok = i >= 0 && i < g_n && g_entries[i]->available;
    pthread_mutex_unlock(&g_mu);
    return ok;
}

const char *loom_registry_why(int i) {
    pthread_mutex_lock(&g_mu);
    init_locked();
    const char *why = i >= 0 && i < g_n ? g_entries[i]->why : "";
    pthread_mutex_unlock(&g_mu);
    return why;
}

loom_backend *loom_registry_find(const char *name) {
    if (!name) return NULL;
    pthread_mutex_lock(&g_mu);
    init_locked();
    reg_entry *e = find_locked(name);
    pthread_mutex_unlock(&g_mu);
    return e ? &e->be : NULL;
}

loom_status loom_registry_select(const char *name, loom_backend **out, char *err, size_t err_n) {
    char dummy[1];
    if (!err || err_n == 0) {
        err = dummy;
        err_n = sizeof dummy;
    }
    err[0] = '\0';
    if (!out) {
        snprintf(err, err_n, "loom_registry_select: out is NULL");
        return LOOM_ERR_INVALID_ARG;
    }
    *out = NULL;
    bool from_env = false;
    if (!name || !*name) {
        name = getenv("LOOM_BACKEND");
        from_env = true;
        if (name && !*name) name = NULL;
    }

    pthread_mutex_lock(&g_mu);
    init_locked();
    loom_status s = LOOM_OK;
    if (name) {
        reg_entry *e = find_locked(name);
        if (!e) {
            int k = snprintf(err, err_n, "unknown backend '%s' (%sknown: ", name,
                             from_env ? "from $LOOM_BACKEND; " : "");
            for (int i = 0; i < g_n && k >= 0 && (size_t)k < err_n; i++)
                k += snprintf(err + k, err_n - (size_t)k, "%s%s", i ? ", " : "",
                              loom_backend_name(&g_entries[i]->be));
            if (k >= 0 && (size_t)k < err_n) snprintf(err + k, err_n - (size_t)k, ")");
            s = LOOM_ERR_INVALID_ARG;
        } else if (!e->available) {
            snprintf(err, err_n, "backend '%s'%s is unavailable: %s", name,
                     from_env ? " (from $LOOM_BACKEND)" : "", e->why);
            s = LOOM_ERR_UNAVAILABLE;
        } else {
            *out = &e->be;
        }
    } else {
        for (int i = 0; i < g_n && !*out; i++)
            if (g_entries[i]->available) *out = &g_entries[i]->be;
        if (!*out) {
            snprintf(err, err_n, "no backend is available");
            s = LOOM_ERR_UNAVAILABLE;
        }
    }
    pthread_mutex_unlock(&g_mu);
    return s;
}

loom_status loom_buffer_alloc(loom_backend *be, size_t size, loom_buffer **out) {
    if (!out) return LOOM_ERR_INVALID_ARG;
    *out = NULL;
    if (!be || !be->iface) return LOOM_ERR_INVALID_ARG;
    if (!be->iface->buffer_alloc)
        return loom_backend_fail(be, LOOM_ERR_UNAVAILABLE, "backend '%s' cannot allocate buffers",
                                 loom_backend_name(be));
    loom_status s = be->iface->buffer_alloc(be, size, out);
    if (s == LOOM_OK && *out && !(*out)->backend) (*out)->backend = be;
    return s;
}

size_t loom_backend_max_buffer(loom_backend *be) {
    if (!be || !be->iface || !be->iface->device_info) return 0;
    /* Zeroed first: a table that leaves the field alone reports no limit. */
    loom_device_info info;
    memset(&info, 0, sizeof info);
    be->iface->device_info(be, &info);
    return info.max_buffer_bytes;
}

void loom_buffer_free(loom_buffer *b) {
    if (b && b->backend && b->backend->iface && b->backend->iface->buffer_free)
        b->backend->iface->buffer_free(b);
}
