/* test_config.c -- the settings table: defaults, environment, flags, files. */
#include "cm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"

typedef struct st {
    char *name;
    char *secret;
    char *secret_file;
    long n;
    long on;
} st;

static int check_no_x(const char *v, char *err, size_t errlen)
{
    if (strchr(v, 'x')) {
        snprintf(err, errlen, "no x allowed");
        return -1;
    }
    return 0;
}

static const cfg_opt opts[] = {
    CFG_OPT(.env = "PLCACHE_T_NAME", .type = CFG_STRING, .def = "dflt", .check = check_no_x,
            .offset = offsetof(st, name), .metavar = "N", .help = "a name"),
    CFG_OPT(.env = "PLCACHE_T_SECRET", .type = CFG_SECRET, .required = 1,
            .offset = offsetof(st, secret), .file_offset = offsetof(st, secret_file),
            .metavar = "S", .help = "a secret"),
    CFG_OPT(.env = "PLCACHE_T_COUNT", .type = CFG_INT, .def = "7", .min = 1, .max = 100,
            .offset = offsetof(st, n), .metavar = "N", .help = "a count"),
    CFG_OPT(.env = "PLCACHE_T_ON", .type = CFG_BOOL, .def = "true", .offset = offsetof(st, on),
            .metavar = "BOOL", .help = "a switch"),
};
static const cfg_program prog = {.name = "t", .summary = "test", .opts = opts, .nopts = 4};

static void clear_env(void)
{
    unsetenv("PLCACHE_T_NAME");
    unsetenv("PLCACHE_T_SECRET");
    unsetenv("PLCACHE_T_SECRET_FILE");
    unsetenv("PLCACHE_T_COUNT");
    unsetenv("PLCACHE_T_ON");
}

static int load(st *s, int argc, char **argv, char *err)
{
    memset(s, 0, sizeof(*s));
    return cfg_load(&prog, argc, argv, s, err, 256);
}

static void test_flag_names_come_from_the_variable(void **state)
{
    (void)state;
    char f[64];
    cfg_flag_name("PLCACHE_LISTEN", f, sizeof(f));
    assert_string_equal(f, "listen");
    cfg_flag_name("PLCACHE_WEBHOOK_SECRET", f, sizeof(f));
    assert_string_equal(f, "webhook-secret");
    cfg_flag_name("PROMPTLAYER_API_KEY", f, sizeof(f));
    assert_string_equal(f, "promptlayer-api-key");
}

static void test_defaults_then_environment_then_flags(void **state)
{
    (void)state;
    st s;
    char err[256];
    clear_env();
    setenv("PLCACHE_T_SECRET", "s3", 1);
    char *a0[] = {"t"};
    assert_int_equal(load(&s, 1, a0, err), CFG_OK);
    assert_string_equal(s.name, "dflt");
    assert_int_equal(s.n, 7);
    cfg_free(&prog, &s);

    setenv("PLCACHE_T_NAME", "env", 1);
    setenv("PLCACHE_T_COUNT", "9", 1);
    assert_int_equal(load(&s, 1, a0, err), CFG_OK);
    assert_string_equal(s.name, "env");
    assert_int_equal(s.n, 9);
    cfg_free(&prog, &s);

    char *a1[] = {"t", "--t-name", "flag", "--t-count=11"};
    assert_int_equal(load(&s, 4, a1, err), CFG_OK);
    assert_string_equal(s.name, "flag");
    assert_int_equal(s.n, 11);
    assert_string_equal(s.secret, "s3");
    assert_null(s.secret_file);
    cfg_free(&prog, &s);
    clear_env();
}

static void test_errors_name_the_setting(void **state)
{
    (void)state;
    st s;
    char err[256];
    clear_env();
    char *a0[] = {"t"};
    assert_int_equal(load(&s, 1, a0, err), CFG_ERROR);
    assert_non_null(strstr(err, "PLCACHE_T_SECRET"));
    cfg_free(&prog, &s);

    setenv("PLCACHE_T_SECRET", "s", 1);
    char *a1[] = {"t", "--t-count", "101"};
    assert_int_equal(load(&s, 3, a1, err), CFG_ERROR);
    assert_non_null(strstr(err, "PLCACHE_T_COUNT"));
    cfg_free(&prog, &s);

    char *a2[] = {"t", "--t-count", "5x"};
    assert_int_equal(load(&s, 3, a2, err), CFG_ERROR);
    cfg_free(&prog, &s);

    char *a3[] = {"t", "--t-name", "xx"};
    assert_int_equal(load(&s, 3, a3, err), CFG_ERROR);
    assert_non_null(strstr(err, "no x allowed"));
    cfg_free(&prog, &s);

    char *a4[] = {"t", "--nope"};
    assert_int_equal(load(&s, 2, a4, err), CFG_ERROR);
    assert_non_null(strstr(err, "--nope"));
    cfg_free(&prog, &s);

    char *a5[] = {"t", "--t-name"};
    assert_int_equal(load(&s, 2, a5, err), CFG_ERROR);
    cfg_free(&prog, &s);

    char *a6[] = {"t", "positional"};
    assert_int_equal(load(&s, 2, a6, err), CFG_ERROR);
    cfg_free(&prog, &s);
    clear_env();
}

/* A yes/no setting takes the usual words in any case, and nothing else. */
static void test_switches_take_true_false_words(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        long want; /* -1: refused */
    } rows[] = {
        {"true", 1}, {"TRUE", 1}, {"yes", 1}, {"On", 1}, {"1", 1},  {"false", 0}, {"False", 0},
        {"no", 0},   {"off", 0},  {"0", 0},   {"2", -1}, {"t", -1}, {"nope", -1}, {" true", -1},
    };
    st s;
    char err[256];
    clear_env();
    setenv("PLCACHE_T_SECRET", "s", 1);
    char *a0[] = {"t"};
    assert_int_equal(load(&s, 1, a0, err), CFG_OK);
    assert_int_equal(s.on, 1); /* the default */
    cfg_free(&prog, &s);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char *a[] = {"t", "--t-on", (char *)rows[i].value};
        int rc = load(&s, 3, a, err);
        if (rows[i].want < 0) {
            assert_int_equal(rc, CFG_ERROR);
            assert_non_null(strstr(err, "PLCACHE_T_ON"));
        } else {
            assert_int_equal(rc, CFG_OK);
            assert_int_equal(s.on, rows[i].want);
        }
        cfg_free(&prog, &s);
    }
    setenv("PLCACHE_T_ON", "off", 1);
    assert_int_equal(load(&s, 1, a0, err), CFG_OK);
    assert_int_equal(s.on, 0);
    cfg_free(&prog, &s);
    clear_env();
}

static void test_secret_from_file_and_reload(void **state)
{
    (void)state;
    st s;
    char err[256];
    char path[] = "/tmp/plcache-test-secret-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "one\n", 4), 4);
    close(fd);
    clear_env();
    setenv("PLCACHE_T_SECRET_FILE", path, 1);
    char *a0[] = {"t"};
    assert_int_equal(load(&s, 1, a0, err), CFG_OK);
    assert_string_equal(s.secret, "one");
    assert_string_equal(s.secret_file, path);

    FILE *f = fopen(path, "w");
    fputs("two\r\n", f);
    fclose(f);
    assert_int_equal(cfg_reload_secret(&opts[1], &s, err, sizeof(err)), 0);
    assert_string_equal(s.secret, "two");

    unlink(path);
    assert_int_equal(cfg_reload_secret(&opts[1], &s, err, sizeof(err)), -1);
    assert_string_equal(s.secret, "two");
    cfg_free(&prog, &s);

    setenv("PLCACHE_T_SECRET", "also", 1);
    assert_int_equal(load(&s, 1, a0, err), CFG_ERROR);
    assert_non_null(strstr(err, "not both"));
    cfg_free(&prog, &s);

    unsetenv("PLCACHE_T_SECRET_FILE");
    assert_int_equal(load(&s, 1, a0, err), CFG_OK);
    assert_int_equal(cfg_reload_secret(&opts[1], &s, err, sizeof(err)), 1);
    cfg_free(&prog, &s);
    clear_env();
}

static void test_listen_check(void **state)
{
    (void)state;
    char err[128];
    assert_int_equal(cfg_check_listen("127.0.0.1:8080", err, sizeof(err)), 0);
    assert_int_equal(cfg_check_listen("[::1]:0", err, sizeof(err)), 0);
    assert_int_equal(cfg_check_listen("8080", err, sizeof(err)), -1);
    assert_int_equal(cfg_check_listen(":80", err, sizeof(err)), -1);
    assert_int_equal(cfg_check_listen("h:65536", err, sizeof(err)), -1);
    assert_int_equal(cfg_check_listen("[::1]8080", err, sizeof(err)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flag_names_come_from_the_variable),
        cmocka_unit_test(test_defaults_then_environment_then_flags),
        cmocka_unit_test(test_errors_name_the_setting),
        cmocka_unit_test(test_switches_take_true_false_words),
        cmocka_unit_test(test_secret_from_file_and_reload),
        cmocka_unit_test(test_listen_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
