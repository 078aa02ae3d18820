/* buf.h -- a growable byte buffer with a hard maximum.
 *
 * Everything that grows from outside input is built in a buf whose maximum is
 * set when it is made (as curl's dynbuf takes a `toobig`). The bytes are always
 * NUL-terminated so they can be handed to C string functions when they hold no
 * NUL of their own.
 */
#ifndef PLCACHE_BUF_H
#define PLCACHE_BUF_H

#include <stddef.h>

typedef struct buf {
    char *data; /* owned; NULL until the first append */
    size_t len;
    size_t cap;
    size_t max; /* appends that would pass this fail */
} buf;

/* Starts an empty buffer that may hold at most `max` bytes. Cannot fail. */
void buf_init(buf *b, size_t max);

/* Appends n bytes. Returns 0, or -1 (buffer unchanged) past the maximum or
 * when memory ran out. */
int buf_append(buf *b, const void *p, size_t n);
int buf_puts(buf *b, const char *s);
int buf_putc(buf *b, char c);
/* printf-style append; -1 past the maximum or on a format error. */
int buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Empties the buffer, keeping its memory. */
void buf_reset(buf *b);

/* Hands the bytes to the caller (free() them; never NULL on success: an empty
 * buffer yields "") and leaves the buffer empty. NULL when memory ran out. */
char *buf_steal(buf *b, size_t *len);

/* Frees the bytes. */
void buf_free(buf *b);

#endif
