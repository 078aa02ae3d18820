/* cm.h -- what every cmocka test includes, in the order cmocka needs. */
#ifndef PLCACHE_TEST_CM_H
#define PLCACHE_TEST_CM_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#endif
