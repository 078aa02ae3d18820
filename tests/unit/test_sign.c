/* test_sign.c -- HMAC-SHA256 signatures and key lists. */
#include "cm.h"

#include <string.h>

#include "core/sign.h"

static void test_hmac_matches_rfc4231_case_2(void **state)
{
    (void)state;
    char hex[65];
    assert_int_equal(sign_hmac_hex("Jefe", 4, "what do ya want for nothing?", 28, hex), 0);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void test_sha256_hex(void **state)
{
    (void)state;
    char hex[65];
    sign_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_parse_hex_accepts_either_case_and_spaces(void **state)
{
    (void)state;
    unsigned char a[32], b[32];
    const char *lo = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    const char *up = " 5BDCC146BF60754E6A042426089575C75A003F089D2739839DEC58B964EC3843 ";
    assert_int_equal(sign_parse_hex(lo, a), 0);
    assert_int_equal(sign_parse_hex(up, b), 0);
    assert_memory_equal(a, b, 32);
}

static void test_parse_hex_refuses_wrong_length_or_digits(void **state)
{
    (void)state;
    unsigned char d[32];
    assert_int_equal(sign_parse_hex("", d), -1);
    assert_int_equal(sign_parse_hex("abcd", d), -1);
    assert_int_equal(
        sign_parse_hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec38430", d), -1);
    assert_int_equal(
        sign_parse_hex("zbdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", d), -1);
    assert_int_equal(
        sign_parse_hex("sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec", d),
        -1);
}

static void test_keys_split_on_commas_and_skip_empty(void **state)
{
    (void)state;
    sign_keys k;
    char err[64];
    assert_int_equal(sign_keys_parse(&k, "a,,bc,", err, sizeof(err)), 0);
    assert_int_equal(k.n, 2);
    assert_string_equal(k.key[0], "a");
    assert_string_equal(k.key[1], "bc");
    sign_keys_free(&k);
    assert_int_equal(k.n, 0);
    assert_int_equal(sign_keys_parse(&k, ",,", err, sizeof(err)), -1);
    assert_int_equal(sign_keys_parse(&k, "", err, sizeof(err)), -1);
}

static void test_verify_any_key_canonical_or_raw(void **state)
{
    (void)state;
    sign_keys k;
    char err[64];
    unsigned char sig[32];
    const char *canon = "{\"a\": 1}", *raw = "{\"a\":1}";
    assert_int_equal(sign_keys_parse(&k, "old,new", err, sizeof(err)), 0);

    sign_hmac("new", 3, canon, strlen(canon), sig);
    assert_true(sign_verify(&k, sig, canon, strlen(canon), raw, strlen(raw)));
    sign_hmac("old", 3, raw, strlen(raw), sig);
    assert_true(sign_verify(&k, sig, canon, strlen(canon), raw, strlen(raw)));
    assert_false(sign_verify(&k, sig, canon, strlen(canon), NULL, 0));
    assert_true(sign_verify(&k, sig, NULL, 0, raw, strlen(raw)));
    sign_hmac("other", 5, canon, strlen(canon), sig);
    assert_false(sign_verify(&k, sig, canon, strlen(canon), raw, strlen(raw)));
    sign_keys_free(&k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hmac_matches_rfc4231_case_2),
        cmocka_unit_test(test_sha256_hex),
        cmocka_unit_test(test_parse_hex_accepts_either_case_and_spaces),
        cmocka_unit_test(test_parse_hex_refuses_wrong_length_or_digits),
        cmocka_unit_test(test_keys_split_on_commas_and_skip_empty),
        cmocka_unit_test(test_verify_any_key_canonical_or_raw),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
