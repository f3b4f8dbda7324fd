/* tests/runtime/test_registry.c - backend registry, selection, plugins.
 * (The interface-conformance checks are test_backend_conformance.c.)
 *
 * The null plugin is found by the registry's scan of $LOOM_PLUGIN_DIR, and
 * again through $LOOM_EXTRA_PLUGINS (a duplicate, dropped); without it that
 * part is skipped. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom/runtime.h"
#include "testing.h"

/* ---- hand-registered fakes ---- */

static loom_status fake_init_ok(loom_backend *be, char *why, size_t why_n) {
    (void)be;
    (void)why;
    (void)why_n;
    return LOOM_OK;
}
static loom_status fake_init_fail(loom_backend *be, char *why, size_t why_n) {
    (void)be;
    snprintf(why, why_n, "fake: no such device\nsecond line");
    return LOOM_ERR_UNAVAILABLE;
}
static bool fake_supports(loom_backend *be, const loom_tensor *n) {
    (void)be;
    (void)n;
    return false;
}
static loom_status fake_compute(loom_backend *be, loom_tensor *const *n, int k) {
    (void)n;
    (void)k;
    return loom_backend_fail(be, LOOM_ERR_UNSUPPORTED, "fake computes nothing");
}

static void fake_device_info(loom_backend *be, loom_device_info *out) {
    (void)be;
    *out = (loom_device_info){0};
    snprintf(out->name, sizeof out->name, "fake");
    snprintf(out->kind, sizeof out->kind, "none");
}
static loom_status fake_buffer_alloc(loom_backend *be, size_t size, loom_buffer **out) {
    *out = NULL;
    return loom_backend_fail(be, LOOM_ERR_UNSUPPORTED, "fake: no memory (%zu bytes)", size);
}
static void fake_buffer_free(loom_buffer *b) {
    (void)b;
}
static loom_status fake_copy_in(loom_buffer *b, size_t off, const void *p, size_t n) {
    (void)off;
    (void)p;
    (void)n;
    return loom_backend_fail(b->backend, LOOM_ERR_UNSUPPORTED, "fake: no memory");
}
static loom_status fake_copy_out(loom_buffer *b, size_t off, void *p, size_t n) {
    (void)off;
    (void)p;
    (void)n;
    return loom_backend_fail(b->backend, LOOM_ERR_UNSUPPORTED, "fake: no memory");
}

/* The required slots; shutdown and synchronize (optional) stay NULL. */
#define FAKE_SLOTS                                                                                 \
    .device_info = fake_device_info, .buffer_alloc = fake_buffer_alloc,                            \
    .buffer_free = fake_buffer_free, .buffer_upload = fake_copy_in,                                \
    .buffer_download = fake_copy_out, .supports = fake_supports, .compute = fake_compute

static const loom_backend_iface k_fake_hi = {
    .abi_version = LOOM_BACKEND_ABI_VERSION,
    .name = "fakehi",
    .priority = 1000,
    .init = fake_init_fail,
    FAKE_SLOTS,
};
static const loom_backend_iface k_fake_mid = {
    .abi_version = LOOM_BACKEND_ABI_VERSION,
    .name = "fakemid",
    .priority = 150,
    .init = fake_init_ok,
    FAKE_SLOTS,
};
/* A required slot left NULL: listed, never initialised, never selected. */
static const loom_backend_iface k_fake_nocompute = {
    .abi_version = LOOM_BACKEND_ABI_VERSION,
    .name = "nocompute",
    .priority = 2000,
    .init = fake_init_ok,
    .device_info = fake_device_info,
    .buffer_alloc = fake_buffer_alloc,
    .buffer_free = fake_buffer_free,
    .buffer_upload = fake_copy_in,
    .buffer_download = fake_copy_out,
    .supports = fake_supports,
};
static const loom_backend_iface k_fake_badabi = {
    .abi_version = LOOM_BACKEND_ABI_VERSION + 1,
    .name = "badabi",
    .init = fake_init_ok,
};

/* Several devices of one kind (docs/adr/0042): "fakemulti" drives 4
 * devices, and device 2 fails to open; each instance's ctx records which
 * device it was opened as. "fakeone" says it has one. */
static int g_multi_shutdowns;
static loom_status fake_multi_init(loom_backend *be, char *why, size_t why_n) {
    if (be->device == 2) {
        snprintf(why, why_n, "fake: device 2 is broken");
        return LOOM_ERR_UNAVAILABLE;
    }
    int *dev = malloc(sizeof *dev);
    if (!dev) return LOOM_ERR_UNAVAILABLE;
    *dev = be->device;
    be->ctx = dev;
    return LOOM_OK;
}
static void fake_multi_shutdown(loom_backend *be) {
    free(be->ctx);
    be->ctx = NULL;
    g_multi_shutdowns++;
}
static int fake_multi_count(loom_backend *be) {
    return be->device == 0 && be->ctx ? 4 : -1; /* asked on device 0 only */
}
static int fake_one_count(loom_backend *be) {
    (void)be;
    return 1;
}
static const loom_backend_iface k_fake_multi = {
    .abi_version = LOOM_BACKEND_ABI_VERSION,
    .name = "fakemulti",
    .priority = 160,
    .init = fake_multi_init,
    .shutdown = fake_multi_shutdown,
    .device_count = fake_multi_count,
    FAKE_SLOTS,
};
static const loom_backend_iface k_fake_one = {
    .abi_version = LOOM_BACKEND_ABI_VERSION,
    .name = "fakeone",
    .priority = 155,
    .init = fake_init_ok,
    .device_count = fake_one_count,
    FAKE_SLOTS,
};

static int index_of(const char *name) {
    for (int i = 0; i < loom_registry_count(); i++)
        if (strcmp(loom_registry_get(i)->iface->name, name) == 0) return i;
    return -1;
}

static void test_cpu_listed(void) {
    CHECK(loom_registry_init() == LOOM_OK);
    CHECK(loom_registry_init() == LOOM_OK); /* idempotent */
    int n = loom_registry_count();
    CHECK(n >= 1);
    int cpu = index_of("cpu");
    CHECK(cpu >= 0);
    CHECK(loom_registry_available(cpu));
    CHECK(strcmp(loom_registry_why(cpu), "") == 0);
    CHECK(loom_registry_find("cpu") == loom_registry_get(cpu));
    CHECK(loom_registry_get(cpu)->index == cpu);
    CHECK(loom_registry_find("nope") == NULL);
    CHECK(loom_registry_get(-1) == NULL && loom_registry_get(n) == NULL);
    CHECK(!loom_registry_available(n));
    CHECK(strcmp(loom_registry_why(n), "") == 0);
    /* Priority order, highest first. */
    for (int i = 1; i < n; i++)
        CHECK(loom_registry_get(i - 1)->iface->priority >= loom_registry_get(i)->iface->priority);
    for (int i = 0; i < n; i++)
        printf("  backend %d: %-8s %s%s\n", i, loom_registry_get(i)->iface->name,
               loom_registry_available(i) ? "available" : "unavailable: ", loom_registry_why(i));
}

static void test_select(void) {
    char err[512];
    loom_backend *be = NULL;
    unsetenv("LOOM_BACKEND");
    CHECK(loom_registry_select("cpu", &be, err, sizeof err) == LOOM_OK);
    CHECK(be && strcmp(be->iface->name, "cpu") == 0);

    /* Best available: the first available entry. */
    CHECK(loom_registry_select(NULL, &be, err, sizeof err) == LOOM_OK);
    int first = 0;
    while (!loom_registry_available(first))
        first++;
    CHECK(be == loom_registry_get(first));
    CHECK(loom_registry_select("", &be, err, sizeof err) == LOOM_OK);
    CHECK(be == loom_registry_get(first));

    loom_status s = loom_registry_select("xyz", &be, err, sizeof err);
    CHECK(s == LOOM_ERR_INVALID_ARG);
    CHECK(be == NULL);
    CHECK_MSG(strstr(err, "unknown backend 'xyz'") && strstr(err, "known: ") && strstr(err, "cpu"),
              "got '%s'", err);

    /* $LOOM_BACKEND overrides the default; an explicit name overrides it. */
    setenv("LOOM_BACKEND", "cpu", 1);
    CHECK(loom_registry_select(NULL, &be, err, sizeof err) == LOOM_OK);
    CHECK(be && strcmp(be->iface->name, "cpu") == 0);
    setenv("LOOM_BACKEND", "xyz", 1);
    CHECK(loom_registry_select(NULL, &be, err, sizeof err) == LOOM_ERR_INVALID_ARG);
    CHECK_MSG(strstr(err, "unknown backend 'xyz'") && strstr(err, "LOOM_BACKEND"), "got '%s'", err);
    CHECK(loom_registry_select("cpu", &be, err, sizeof err) == LOOM_OK);
    setenv("LOOM_BACKEND", "", 1); /* empty = unset */
    CHECK(loom_registry_select(NULL, &be, err, sizeof err) == LOOM_OK);
    unsetenv("LOOM_BACKEND");

    /* A small error buffer truncates but never overflows; NULL is allowed. */
    char small[8];
    CHECK(loom_registry_select("xyz", &be, small, sizeof small) == LOOM_ERR_INVALID_ARG);
    CHECK(strlen(small) < sizeof small);
    CHECK(loom_registry_select("xyz", &be, NULL, 0) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_registry_select("cpu", NULL, err, sizeof err) == LOOM_ERR_INVALID_ARG);
}

static void test_add(void) {
    char err[512];
    loom_backend *be = NULL;
    CHECK(loom_registry_add(&k_fake_hi) == LOOM_OK);
    CHECK(loom_registry_add(&k_fake_mid) == LOOM_OK);
    CHECK(loom_registry_add(&k_fake_mid) == LOOM_ERR_INVALID_ARG); /* duplicate name */
    CHECK(loom_registry_add(&k_fake_badabi) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_registry_add(NULL) == LOOM_ERR_INVALID_ARG);
    CHECK(index_of("badabi") < 0);

    int hi = index_of("fakehi"), mid = index_of("fakemid"), cpu = index_of("cpu");
    CHECK(hi == 0);
    CHECK(mid >= 0 && cpu >= 0 && mid < cpu);
    CHECK(!loom_registry_available(hi));
    /* The reason is kept, on one line. */
    CHECK_MSG(strstr(loom_registry_why(hi), "fake: no such device") &&
                  !strchr(loom_registry_why(hi), '\n'),
              "got '%s'", loom_registry_why(hi));
    CHECK(loom_registry_available(mid));
    for (int i = 0; i < loom_registry_count(); i++)
        CHECK(loom_registry_get(i)->index == i);

    /* The unavailable top entry is skipped by default; asking for it names why. */
    CHECK(loom_registry_select(NULL, &be, err, sizeof err) == LOOM_OK);
    CHECK(be && strcmp(be->iface->name, "fakemid") == 0);
    CHECK(loom_registry_select("fakehi", &be, err, sizeof err) == LOOM_ERR_UNAVAILABLE);
    CHECK_MSG(strstr(err, "backend 'fakehi' is unavailable: fake: no such device"), "got '%s'",
              err);
    setenv("LOOM_BACKEND", "fakehi", 1);
    CHECK(loom_registry_select(NULL, &be, err, sizeof err) == LOOM_ERR_UNAVAILABLE);
    unsetenv("LOOM_BACKEND");

    /* Buffer wrappers pass the backend's failure on; optional slots left
     * NULL (synchronize, shutdown) are skipped by the runtime. */
    loom_buffer *b = (loom_buffer *)1;
    CHECK(loom_buffer_alloc(loom_registry_get(mid), 64, &b) == LOOM_ERR_UNSUPPORTED);
    CHECK(b == NULL);
    CHECK(strstr(loom_registry_get(mid)->error, "fake: no memory (64 bytes)") != NULL);
    loom_buffer_free(NULL);
    CHECK(loom_backend_synchronize(loom_registry_get(mid)) == LOOM_OK);

    /* A table missing a required slot is listed with the slot's name, never
     * initialised or selected, even at the highest priority. */
    CHECK(loom_backend_missing_slot(&k_fake_nocompute) != NULL);
    CHECK(loom_backend_missing_slot(&k_fake_mid) == NULL);
    CHECK(loom_registry_add(&k_fake_nocompute) == LOOM_OK);
    int nc = index_of("nocompute");
    CHECK(nc == 0 && !loom_registry_available(nc));
    CHECK_MSG(strstr(loom_registry_why(nc), "no compute (a required slot"), "got '%s'",
              loom_registry_why(nc));
    CHECK(loom_registry_select(NULL, &be, err, sizeof err) == LOOM_OK);
    CHECK(be && strcmp(be->iface->name, "fakemid") == 0);

    loom_registry_shutdown();
    CHECK(index_of("fakehi") < 0); /* count re-initialises: only built-ins and plugins */
    CHECK(index_of("cpu") >= 0);
}

static void test_multi_device(void) {
    char err[512];
    loom_backend *be = NULL;
    g_multi_shutdowns = 0;
    CHECK(loom_registry_add(&k_fake_multi) == LOOM_OK);
    CHECK(loom_registry_add(&k_fake_multi) == LOOM_ERR_INVALID_ARG); /* duplicate name */
    CHECK(loom_registry_add(&k_fake_one) == LOOM_OK);
    /* One entry per device, in device order, next to each other. */
    int first = index_of("fakemulti");
    CHECK(first >= 0);
    int n = 0;
    for (int i = 0; i < loom_registry_count(); i++) {
        const loom_backend *b = loom_registry_get(i);
        if (strcmp(b->iface->name, "fakemulti") != 0) continue;
        char want[32];
        snprintf(want, sizeof want, "fakemulti:%d", n);
        CHECK_MSG(i == first + n && b->device == n && strcmp(loom_backend_name(b), want) == 0,
                  "entry %d: device %d named '%s', want %s", i, b->device, loom_backend_name(b),
                  want);
        CHECK(b->index == i);
        /* Each available instance has its own ctx, opened as its device. */
        if (n != 2) CHECK(loom_registry_available(i) && b->ctx && *(int *)b->ctx == n);
        n++;
    }
    CHECK_MSG(n == 4, "%d fakemulti entries", n);
    /* Lookup: NAME and NAME:0 are device 0; NAME:I device I; nothing else. */
    loom_backend *d0 = loom_registry_find("fakemulti:0");
    CHECK(d0 && d0->device == 0 && loom_registry_find("fakemulti") == d0);
    be = loom_registry_find("fakemulti:3");
    CHECK(be && be->device == 3 && be != d0);
    const char *bad[] = {"fakemulti:4",  "fakemulti:", "fakemulti:x",  "fakemulti:003",
                         "fakemulti:-1", "fakemult",   "fakemulti:1:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_MSG(loom_registry_find(bad[i]) == NULL, "'%s' found", bad[i]);
    /* A device that failed to open is listed with its reason, alone. */
    be = loom_registry_find("fakemulti:2");
    CHECK(be && !loom_registry_available(be->index));
    CHECK_MSG(strstr(loom_registry_why(be->index), "fake: device 2 is broken"), "got '%s'",
              loom_registry_why(be->index));
    CHECK(loom_registry_select("fakemulti:1", &be, err, sizeof err) == LOOM_OK && be &&
          be->device == 1);
    CHECK(loom_registry_select("fakemulti:2", &be, err, sizeof err) == LOOM_ERR_UNAVAILABLE);
    CHECK_MSG(strstr(err, "backend 'fakemulti:2' is unavailable: fake: device 2 is broken"),
              "got '%s'", err);
    CHECK(loom_registry_select("fakemulti:9", &be, err, sizeof err) == LOOM_ERR_INVALID_ARG);
    CHECK_MSG(strstr(err, "known: ") && strstr(err, "fakemulti:3"), "got '%s'", err);
    /* A backend of one device keeps its plain name; NAME:0 finds it too. */
    be = loom_registry_find("fakeone");
    CHECK(be && strcmp(loom_backend_name(be), "fakeone") == 0 && be->device == 0);
    CHECK(loom_registry_find("fakeone:0") == be && !loom_registry_find("fakeone:1"));
    loom_registry_shutdown();
    CHECK_MSG(g_multi_shutdowns == 3, "%d shutdowns, want 3 (devices 0, 1, 3)", g_multi_shutdowns);
}

static void test_null_plugin(void) {
    unsetenv("LOOM_TEMPLATE_DEVICE"); /* the template's pretend device stays off */
    const char *extra = getenv("LOOM_EXTRA_PLUGINS");
    char path[4096];
    if (!extra || !*extra) {
        const char *dir = getenv("LOOM_PLUGIN_DIR");
        snprintf(path, sizeof path, "%s/libloom-backend-null.so", dir ? dir : ".");
        if (access(path, F_OK) != 0) {
            printf("note: %s not found, null plugin check skipped\n", path);
            return;
        }
        setenv("LOOM_EXTRA_PLUGINS", path, 1);
    }
    loom_registry_shutdown();
    int i = index_of("null");
    CHECK(i >= 0);
    if (i < 0) return;
    CHECK(!loom_registry_available(i));
    CHECK_MSG(strcmp(loom_registry_why(i), "null backend: template, no device") == 0, "got '%s'",
              loom_registry_why(i));
    CHECK(loom_registry_get(i)->iface->priority == 0); /* from its vtable */
    char err[512];
    loom_backend *be = NULL;
    CHECK(loom_registry_select("null", &be, err, sizeof err) == LOOM_ERR_UNAVAILABLE);
    CHECK_MSG(strstr(err, "null backend: template, no device"), "got '%s'", err);

    /* A file that is not a loadable library is listed with the dlopen error;
     * a missing file is not listed at all. */
    char bogus[] = "/tmp/libloom-backend-bogusXXXXXX";
    int fd = mkstemp(bogus);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(write(fd, "not an ELF file", 15) == 15);
        close(fd);
        char list[8192];
        snprintf(list, sizeof list, "%s:/nonexistent/libloom-backend-gone.so:%s", bogus,
                 getenv("LOOM_EXTRA_PLUGINS"));
        setenv("LOOM_EXTRA_PLUGINS", list, 1);
        loom_registry_shutdown();
        int k = -1;
        for (int j = 0; j < loom_registry_count(); j++)
            if (strncmp(loom_registry_get(j)->iface->name, "bogus", 5) == 0) k = j;
        CHECK(k >= 0);
        if (k >= 0) {
            CHECK(!loom_registry_available(k));
            CHECK_MSG(strstr(loom_registry_why(k), "cannot load"), "got '%s'",
                      loom_registry_why(k));
        }
        CHECK(index_of("gone") < 0);
        CHECK(index_of("null") >= 0);
        unlink(bogus);
    }
}

/* The naming rule: in a plugin directory, every libloom-backend-<name>.so is
 * loaded and must name its backend <name>; other files are ignored; plugins
 * this build knows of (backends/<name>/ folders) but the directory lacks are
 * listed as not found. */
static void test_scan(void) {
    const char *dir = getenv("LOOM_PLUGIN_DIR");
    char null_so[4096];
    snprintf(null_so, sizeof null_so, "%s/libloom-backend-null.so", dir ? dir : ".");
    if (!dir || access(null_so, F_OK) != 0) {
        printf("note: %s not found, scan check skipped\n", null_so);
        return;
    }
    char tmp[] = "/tmp/loom-plugins-XXXXXX";
    CHECK(mkdtemp(tmp) != NULL);
    char renamed[4200], ignored[4200], saved_dir[4096];
    snprintf(renamed, sizeof renamed, "%s/libloom-backend-renamed.so", tmp);
    snprintf(ignored, sizeof ignored, "%s/libloom-backend-other.so.1", tmp);
    CHECK(symlink(null_so, renamed) == 0);
    CHECK(symlink(null_so, ignored) == 0);
    snprintf(saved_dir, sizeof saved_dir, "%s", dir);
    setenv("LOOM_PLUGIN_DIR", tmp, 1);
    unsetenv("LOOM_EXTRA_PLUGINS");
    loom_registry_shutdown();
    int r = index_of("renamed");
    CHECK(r >= 0);
    if (r >= 0) {
        CHECK(!loom_registry_available(r));
        CHECK_MSG(strstr(loom_registry_why(r), "names its backend 'null'; its file name says "
                                               "'renamed'"),
                  "got '%s'", loom_registry_why(r));
    }
    CHECK(index_of("other") < 0);
    /* null is one of this tree's backend folders, absent from tmp. */
    int n = index_of("null");
    CHECK(n >= 0);
    if (n >= 0)
        CHECK_MSG(strstr(loom_registry_why(n), "not found"), "got '%s'", loom_registry_why(n));
    CHECK(index_of("cpu") >= 0 && loom_registry_available(index_of("cpu")));
    unlink(renamed);
    unlink(ignored);
    rmdir(tmp);
    setenv("LOOM_PLUGIN_DIR", saved_dir, 1);
    loom_registry_shutdown();
}

int main(void) {
    test_cpu_listed();
    test_select();
    test_add();
    test_multi_device();
    test_null_plugin();
    test_scan();
    loom_registry_shutdown();
    return test_summary("test_registry");
}
