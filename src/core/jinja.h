/* jinja.h -- one text through jinja2 as the PromptLayer SDK renders it.
 *
 * The SDK renders a jinja2 template t with the variables vars as
 *
 *     env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.ChainableUndefined)
 *     env.from_string(t).render(**vars)       # any exception: t unchanged
 *
 * (all other settings default: no autoescape, no trim_blocks or
 * lstrip_blocks, one trailing newline of the template dropped, newlines of
 * the template made "\n"), and this module gives the same text byte for
 * byte (jinja2 3.1, Python 3.11), or says that jinja2 raises, or that its
 * answer is not reproduced here. Variables are JSON values, standing for
 * what json.loads makes of them.
 *
 * The subset rendered (everything else is JINJA_UNSUPPORTED, or
 * JINJA_RAISES where jinja2 surely raises):
 *
 *   - text, {{ expr }}, {# comments #}, {% raw %}, whitespace control with
 *     '-' (and '+', a no-op with lstrip_blocks off);
 *   - {% if %}/{% elif %}/{% else %}, {% for target in iter [if test] %}
 *     with {% else %} and the loop variable (index, index0, revindex,
 *     revindex0, first, last, length, depth, depth0, previtem, nextitem,
 *     cycle(), changed()), {% set %} (names, tuples, namespace attributes,
 *     and the block form with filters), {% print %}, with jinja2's scoping:
 *     names are bound at compile time to the frame (template, loop body,
 *     loop test, loop else, set block) that assigns them, so a loop body or
 *     set block does not leak its assignments, and a name the template
 *     assigns later reads as undefined before that (not as the variable);
 *   - literals (strings with Python's escapes except \N{...}, integers up to
 *     64 bits, floats, true/false/none, lists, tuples, dicts with string
 *     keys), names, .attribute and [item] lookups as the sandbox makes them
 *     (attribute first, then item, or the other way round; unsafe names
 *     undefined), slices, calls of range(), namespace(), dict(), loop.cycle,
 *     loop.changed and the common str/dict/list methods (upper, lower,
 *     strip, lstrip, rstrip, split, startswith, endswith, replace, title,
 *     capitalize, join, count, find, index; get, items, keys, values;
 *     count, index), the operators + - * / // % ** ~, comparisons, in / not
 *     in, and / or / not, conditional expressions, with what jinja2's
 *     constant folding does to them (a folded inf or nan raises NameError,
 *     "-2 ** x" is -(2 ** x), a constant slice that fails is undefined, an
 *     unknown filter in a folded-away branch is never compiled);
 *   - filters abs, attr, capitalize, center, count, d, default, dictsort,
 *     e, escape, first, float, forceescape, indent, int, items, join, last,
 *     length, list, lower, map, max, min, reject, rejectattr, replace,
 *     reverse, round, safe, select, selectattr, sort, string, sum, title,
 *     tojson, trim, truncate, unique, upper, wordcount; tests odd, even,
 *     divisibleby, defined, undefined, none, boolean, false, true, integer,
 *     float, lower, upper, string, mapping, number, sequence, iterable,
 *     callable, sameas (with none, true, false), escaped, in, filter, test
 *     and the comparison tests (eq, ==, equalto, ne, !=, gt, >,
 *     greaterthan, ge, >=, lt, <, lessthan, le, <=);
 *   - undefined values as ChainableUndefined makes them (empty when
 *     printed, false, empty when iterated, undefined again when looked
 *     into; compared, called or used in arithmetic, they raise).
 *
 * A name jinja2 does not know as a filter or test, a tag it does not know,
 * or a syntax error is JINJA_RAISES, as jinja2 raises on it. Tags jinja2
 * knows but this module does not render (macro, call, block, extends,
 * include, import, from, with, autoescape, filter) and filters it knows but
 * this module does not (batch, filesizeformat, format, groupby, pprint,
 * random, slice, striptags, urlencode, urlize, wordwrap, xmlattr) are
 * JINJA_UNSUPPORTED, the filters only when they are called. So are: the
 * printf-style `str % args`, big integers, names or numbers holding
 * non-ASCII characters, printing an object jinja2 prints with its address
 * (a method, a generator), a slice inside a tuple of subscripts, and
 * recursion past the limits below.
 *
 * Limits, so that a template from outside cannot hang or exhaust the stack:
 * expressions nest at most JINJA_MAX_DEPTH deep and statements
 * JINJA_MAX_NEST deep (deeper is JINJA_UNSUPPORTED: Python's own compiler
 * gives up somewhere past these); a render takes at most JINJA_MAX_STEPS
 * steps (nodes evaluated, items iterated; past them JINJA_UNSUPPORTED);
 * output and every temporary text are bounded by out's maximum, and all
 * memory of one render by four times that plus a megabyte (past either
 * JINJA_NOROOM).
 *
 * Pure: no I/O, no global state, thread-safe, never blocks.
 */
#ifndef PLCACHE_JINJA_H
#define PLCACHE_JINJA_H

#include <jansson.h>
#include <stddef.h>

#include "core/buf.h"

typedef enum jinja_rc {
    JINJA_NOROOM = -1,     /* out of memory, or past out's maximum */
    JINJA_OK = 0,          /* rendered into out */
    JINJA_RAISES = 1,      /* jinja2 raises: the SDK keeps the text as it was */
    JINJA_UNSUPPORTED = 2, /* jinja2's answer is not reproduced here: ask PromptLayer */
} jinja_rc;

#define JINJA_MAX_DEPTH 32
#define JINJA_MAX_NEST 16
#define JINJA_MAX_STEPS 2000000

/* Renders the len bytes of text (UTF-8, may hold NUL) with vars, a JSON
 * object (NULL: no variables), appending the result to out. Returns a
 * jinja_rc; on anything but JINJA_OK, out is left as it was. Text that is
 * not valid UTF-8 is JINJA_UNSUPPORTED (a Python str always is), as is vars
 * that is neither NULL nor an object. A variable named "self" is
 * JINJA_RAISES (render(**vars) takes self as its own argument). vars is
 * only read; nothing is kept after the call. */
int jinja_render(buf *out, const char *text, size_t len, const json_t *vars);

#endif
