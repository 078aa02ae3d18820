/* text.h -- small character helpers shared by the parsers in core. */
#ifndef PLCACHE_TEXT_H
#define PLCACHE_TEXT_H

/* The value of a hex digit (either case), or -1. */
int text_hexval(char c);

#endif
