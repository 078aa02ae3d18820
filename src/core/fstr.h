/* fstr.h -- one text through the PromptLayer SDK's f-string rule.
 *
 * The SDK renders an f-string template t with the variables vars as
 *
 *     resolved = {}
 *     for literal, field_name, spec, conv in string.Formatter().parse(t):
 *         if field_name:
 *             v = vars.get(field_name)
 *             resolved[field_name] = v if v is not None else ""
 *     return t.format(**resolved)     # any exception: t unchanged
 *
 * and this module gives the same text byte for byte, or says that Python
 * raises, or that its answer is not reproduced here. What that rule implies
 * (all checked against python3.11):
 *
 *   - "{{" and "}}" are braces; a lone '{' or '}' raises. A field is
 *     {name[!conv][:spec]}; inside [...] of a name, ':', '!' and '}' are name.
 *   - resolved holds the whole field names of the top level only, while
 *     str.format looks up the part before the first '.' or '[': "{a.b}" raises
 *     (no "a"), "{a}{a.b}" reads attribute b of vars["a"]. Names inside a
 *     spec ("{x:{w}}") are looked up but never added: they need a top-level
 *     "{w}" somewhere. A missing or null variable is "".
 *   - An empty name, or one whose first part is all decimal digits (any
 *     script), is positional and raises: there are no positional arguments.
 *   - "[k]" indexes: all-digit k is an int (str and list by position), any
 *     other k a str (dict by key). ".real", ".imag", ".numerator",
 *     ".denominator" of int and bool, ".real" and ".imag" of float are
 *     reproduced; other attributes are FSTR_UNSUPPORTED (Python would print a
 *     method's address, a docstring, or raise AttributeError).
 *   - !r, !s, !a are repr(), str(), ascii(); the value is then formatted with
 *     format(value, spec) (core/pyfmt.h); a spec may hold fields itself, one
 *     level deep ("{a:{w}}"); deeper raises ("Max string recursion exceeded").
 *   - Values put in are never scanned again.
 *
 * When one field is FSTR_UNSUPPORTED the rest are still checked: if a later
 * one surely raises, the answer is FSTR_RAISES.
 *
 * Pure: no I/O, no global state, thread-safe, never blocks.
 */
#ifndef PLCACHE_FSTR_H
#define PLCACHE_FSTR_H

#include <jansson.h>
#include <stddef.h>

#include "core/buf.h"

typedef enum fstr_rc {
    FSTR_NOROOM = -1,     /* out of memory, or the text passes out's maximum */
    FSTR_OK = 0,          /* rendered into out */
    FSTR_RAISES = 1,      /* Python raises: the SDK keeps the text as it was */
    FSTR_UNSUPPORTED = 2, /* Python's answer is not reproduced: ask PromptLayer */
} fstr_rc;

/* Renders the len bytes of text (UTF-8, may hold NUL) with vars, a JSON
 * object (NULL: no variables), appending the result to out. Returns an
 * fstr_rc. On anything but FSTR_OK, out is left as it was. Text that is not
 * valid UTF-8 has no Python equivalent (a str is always valid) and is
 * FSTR_UNSUPPORTED, as is a vars that is neither NULL nor an object. Output and
 * temporary texts are bounded by out's maximum (FSTR_NOROOM past it). */
int fstr_render(buf *out, const char *text, size_t len, const json_t *vars);

#endif
