#!/usr/bin/python3
"""sdk_render_cases.py -- src/python/plcache.py's render() against the rendering
of PromptLayer's Python SDK (promptlayer/template_cache.py: render_response and
is_locally_renderable), on generated template entries and input variables.

The SDK is not a dependency of plcache and is not in this repository. Its
template_cache.py is pure Python needing only jinja2, so it can be loaded from
a checkout of https://github.com/MagnivOrg/prompt-layer-library:

    git -C prompt-layer-library show HEAD:promptlayer/template_cache.py > /tmp/sdk_tc.py
    /usr/bin/python3 tests/system/sdk_render_cases.py compare /tmp/sdk_tc.py --count 20000
    /usr/bin/python3 tests/system/sdk_render_cases.py table /tmp/sdk_tc.py \\
        tests/system/sdk_render_table.json --sdk-rev "$(git -C prompt-layer-library describe --always)"

`compare` renders every case both ways and prints the differences (exit 1 if
any); `table` writes the SDK's outcome for the fixed corpus (the hand-written
CASES and TABLE_COUNT generated ones, seed TABLE_SEED) to a JSON file, which
tests/system/test_python.py checks render() against without the SDK.

An outcome is, as the SDK's cached path sees an entry: "not_local" when
is_locally_renderable says False (the SDK asks PromptLayer to render),
"raises" when its check or render_response raises, else the rendered entry.
render() must give: NotRenderable, RenderError, or the same entry, and
is_locally_renderable() False wherever the SDK's says False or raises.
Needs /usr/bin/python3 with python3-jinja2 (the SDK and render() then use the
same jinja2).
"""
import copy
import importlib.util
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "src", "python"))
import plcache  # noqa: E402

TABLE_SEED = 13
TABLE_COUNT = 300

FSTRINGS = [
    "Hello {name}", "You help with {topic}.", "{question}", "{name!r} and {name!s}",
    "{n:>5}|{n:<3}|", "{n:03d}", "{f:.2f}", "{{literal}} {name}", "{", "}", "a { b", "{}",
    "{0}", "{a.b}", "{items[0]}", '{"json": 1}', "{ name }", "{first-name}", "{x:{y}}",
    "{name!x}", "Ünï {名前} ✓", "{missing}", "line1\r\nline2 {name}\n", "{items}", "{d}",
    "{flag}", "{none_val}", "no fields at all", "", "{name}{name}{name}", "{n:,}",
    "{name:^10}", "{name:d}", "{flag:d}", "{big}", "{f}", "{empty}", "{{{name}}}", "}}{{",
    "{name!a}", "{d[k]}", "{n.real}", "{ }", "{:}", "{name:}", "{topic} {question} {missing}",
    "{x:{y}}{y}", "{n!r:>6}", "{f:e}", "{items!s:.3}", "tab\there {name}", "{名前}",
]

JINJAS = [
    "Hello {{ name }}", "{% if flag %}yes{% else %}no{% endif %}",
    "{% for i in items %}{{ i }},{% endfor %}", "{{ name | upper }}", "{{ missing.attr.deep }}",
    "{{ missing() }}", "{{ missing + 1 }}", "{{ name.__class__ }}", "{% bad", "x\n", "x\n\n",
    "a\r\nb {{ name }}", "{{ none_val }}", "{{ d.items() | list }}", "{{ items | join(', ') }}",
    "{{ missing | default('dflt') }}", "{{ n * 2 }}", "{{ f }}", "{{ d }}", "{{ items }}",
    "{# comment #}text", "{{ name }}{% raw %}{{ not }}{% endraw %}",
    "{{ ''.__class__.__mro__ }}", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
    "{{ name|length }}", "{{ items|first }}", "{{ n|int + 1 }}",
    "{{ '%s-%s'|format(name, n) }}", "{{ items.append(9) }}{{ items }}", "Hi {name}",
    "{{ name }", "{{ flag and 'T' or 'F' }}", "{{ range(3)|list }}", "{{ big }}",
    "{{ 'x' * 3 }}", "{{ name | replace('a','b') | title }}", "{{ missing.x | default('z') }}",
    "{% set y = n + 1 %}{{ y }}", "{{ d['k'] }}", "{{ d.k }}", "{{ undefined_fn(1) }}",
    "{{ 1/0 }}", "{{ '{0}'.format(name) }}", "{{ topic }}: {{ question }}", "",
    "{%- if flag -%}\n  trimmed\n{%- endif -%}", "{{ missing[0].x }}", "{{ name ~ '!' }}",
    "{{ items|length }} items", "{{ none_val is none }}", "{{ d|tojson }}",
]

VALUES = {
    "name": ["Ada", "O'Brien", "Zoë", "", None, 42, "{name}", "{{ name }}"],
    "topic": ["physics", "a {b} c", ""],
    "question": ["Why?", "What is 2+2?\n", None],
    "n": [7, -3, 1.5, "7", 0],
    "f": [3.14159, 1e20, 1.0, -0.0],
    "flag": [True, False, None],
    "items": [["a", "b"], [], [1, 2, 3]],
    "d": [{"k": "v"}, {}, {"k": 1, "z": [1]}],
    "none_val": [None],
    "big": [10 ** 20, -1],
    "first-name": ["Grace"],
    "名前": ["Taro"],
    "a.b": ["dot"],
    "x": ["X"],
    "y": [">5", "d"],
    "empty": [""],
}


def pick_text(rng, fmt_hint):
    """A text: usually from the pool of its format, sometimes the other."""
    pool = JINJAS if fmt_hint == "jinja2" else FSTRINGS
    if rng.random() < 0.2:
        pool = FSTRINGS if pool is JINJAS else JINJAS
    return rng.choice(pool)


def variables(rng):
    r = rng.random()
    if r < 0.12:
        return None
    if r < 0.22:
        return {}
    keys = rng.sample(sorted(VALUES), rng.randint(1, len(VALUES)))
    return {k: copy.deepcopy(rng.choice(VALUES[k])) for k in keys}


def block(rng, fmt):
    r = rng.random()
    if r < 0.7:
        return {"type": "text", "text": pick_text(rng, fmt)}
    return rng.choice([
        {"type": "image_url", "image_url": {"url": "https://x/{name}.png"}},
        {"type": "text", "text": 5},
        {"type": "text"},
        {"text": "untyped {name}"},
        {"type": "input_text", "text": "{name}"},
        {"type": "media_variable", "name": "img"},
        "a string block {name}",
        None,
    ])


def content(rng, fmt):
    r = rng.random()
    if r < 0.92:
        return [block(rng, fmt) for _ in range(rng.randint(0, 3))]
    return rng.choice(["plain {name}", None, {"type": "text", "text": "{name}"}, 5, True, ""])


FORMATS = ["f-string", "jinja2", "__missing__", None, "JINJA2", "jinja"]


def with_format(rng, obj, weights=(4, 4, 3, 1, 1, 1)):
    fmt = rng.choices(FORMATS, weights)[0]
    if fmt != "__missing__":
        obj["template_format"] = fmt
    return fmt


def message(rng):
    r = rng.random()
    if r < 0.03:
        return rng.choice(["not a message", 5, None, ["x"]])
    role = rng.choices(["system", "user", "assistant", "developer", "tool", "placeholder",
                        "function"], [4, 6, 2, 1, 1, 0.4, 0.3])[0]
    m = {"role": role}
    fmt = with_format(rng, m)
    if role == "placeholder":
        m["name"] = "history"
        return m
    if rng.random() < 0.97:
        m["content"] = content(rng, fmt)
    if rng.random() < 0.1:
        m["name"] = "{name}"
    return m


def prompt_template(rng):
    r = rng.random()
    if r < 0.7:
        pt = {"type": "chat"}
        if rng.random() < 0.96:
            pt["messages"] = [message(rng) for _ in range(rng.randint(0, 4))]
        else:
            pt["messages"] = rng.choice([None, "abc", "", {}, {"k": 1}, 5])
        t = rng.random()
        if t < 0.2:
            pt["tools"] = [{"type": "function", "function": {"name": "f",
                                                            "description": "{name}"}}]
        elif t < 0.24:
            pt["tools"] = [{"type": "variable", "name": "tools"}]
        elif t < 0.27:
            pt["tools"] = rng.choice(["x", [1], 5, {}, {"type": "variable"}, None, []])
        pt["input_variables"] = []
        return pt
    if r < 0.9:
        pt = {"type": "completion"}
        fmt = with_format(rng, pt)
        if rng.random() < 0.96:
            pt["content"] = content(rng, fmt)
        if rng.random() < 0.05:
            pt["tools"] = [{"type": "variable"}]
        return pt
    return rng.choice([None, {}, {"type": "other", "content": [{"type": "text", "text": "{name}"}]},
                       {"messages": [{"role": "user", "content": [{"type": "text", "text": "{x}"}]}]},
                       "a string", [1], 0, [], "__missing__"])


def parts(rng, fmt):
    if rng.random() < 0.05:
        return rng.choice([None, "x", 5])
    out = []
    for _ in range(rng.randint(0, 3)):
        out.append(rng.choice([{"text": pick_text(rng, fmt)}, {"type": "image", "text": "{name}"},
                               {"inline_data": {"data": "{name}"}}, "str part", {"text": 7}]))
    return out


def kw_content(rng, fmt):
    r = rng.random()
    if r < 0.45:
        return pick_text(rng, fmt)
    if r < 0.9:
        out = []
        for _ in range(rng.randint(0, 3)):
            out.append(rng.choice([
                {"type": "text", "text": pick_text(rng, fmt)},
                {"type": "input_text", "text": pick_text(rng, fmt)},
                {"text": pick_text(rng, fmt)},
                {"type": "image_url", "image_url": {"url": "{name}"}},
                {"type": "output_text", "text": "{name}"},
                {"type": None, "text": "{name}"},
                {"type": "text", "text": None},
                "str part {name}",
            ]))
        if rng.random() < 0.03:
            out.append({"type": ["text"], "text": "{name}"})
        return out
    return rng.choice([None, 5, {"text": "{name}"}, True])


def llm_kwargs(rng, fmt):
    r = rng.random()
    if r < 0.3:
        return None
    if r < 0.35:
        return "__missing__"
    if r < 0.4:
        return rng.choice([{}, [], 0, False, "", "a string", [1], 5, True])
    kw = {"model": "m", "temperature": 0.5}
    if rng.random() < 0.7:
        msgs = []
        for _ in range(rng.randint(0, 3)):
            if rng.random() < 0.05:
                msgs.append(rng.choice(["a str", "a content str", ["content"], [1], 5, None, {}]))
            else:
                m = {"role": rng.choice(["system", "user", "assistant"])}
                if rng.random() < 0.95:
                    m["content"] = kw_content(rng, fmt)
                msgs.append(m)
        kw["messages"] = msgs if rng.random() < 0.97 else rng.choice([None, "abc", {}, 5])
    if rng.random() < 0.15:
        kw["input"] = [{"role": "user", "content": kw_content(rng, fmt)}, "not a dict", 5] \
            if rng.random() < 0.95 else rng.choice([None, 3])
    if rng.random() < 0.35:
        kw["system"] = kw_content(rng, fmt)
    if rng.random() < 0.15:
        kw["contents"] = [{"role": "user", "parts": parts(rng, fmt)}, "x"] \
            if rng.random() < 0.95 else rng.choice([None, 1])
    if rng.random() < 0.15:
        kw["history"] = [{"role": "model", "parts": parts(rng, fmt)}]
    s = rng.random()
    if s < 0.1:
        kw["system_instruction"] = {"parts": parts(rng, fmt)}
    elif s < 0.15:
        kw["system_instruction"] = parts(rng, fmt)
    elif s < 0.18:
        kw["system_instruction"] = rng.choice(["{name}", None, 5])
    if rng.random() < 0.1:
        kw["generation_config"] = {"system_instruction": {"parts": parts(rng, fmt)}} \
            if rng.random() < 0.8 else rng.choice(["x", None, {"system_instruction": [{"text": "{x}"}]}])
    if rng.random() < 0.15:
        kw["prompt"] = rng.choice([pick_text(rng, fmt), 5, None])
    if rng.random() < 0.1:
        kw["tools"] = [{"type": "function", "function": {"name": "f", "description": "{name}"}}]
        kw["response_format"] = {"type": "json_schema", "json_schema": {"name": "{name}"}}
        kw["instructions"] = "{name}"
    return kw


def entry(rng):
    e = {"version": 1, "metadata": {"model": {"provider": "openai", "name": "{name}"}}}
    pt = prompt_template(rng)
    if pt != "__missing__":
        e["prompt_template"] = pt
    fmt = "f-string"
    if isinstance(pt, dict) and pt.get("type") == "chat" and isinstance(pt.get("messages"), list) \
            and pt["messages"] and isinstance(pt["messages"][0], dict):
        fmt = pt["messages"][0].get("template_format", "f-string")
    elif isinstance(pt, dict):
        fmt = pt.get("template_format", "f-string")
    kw = llm_kwargs(rng, fmt)
    if kw != "__missing__":
        e["llm_kwargs"] = kw
    return e


def chat(*msgs, fmt="f-string"):
    return {"type": "chat", "messages": [
        {"role": r, "template_format": fmt, "content": [{"type": "text", "text": t}]}
        for r, t in msgs]}


# Hand-written cases, always in the table: the rules one by one.
CASES = [
    ({"prompt_template": chat(("user", "Hi {name}")), "llm_kwargs": None}, {"name": "Ada"}),
    ({"prompt_template": chat(("user", "Hi {name}")), "llm_kwargs": None}, {}),
    ({"prompt_template": chat(("user", "Hi {name}")), "llm_kwargs": None}, None),
    ({"prompt_template": chat(("user", "Hi {name}"))}, None),
    ({"prompt_template": chat(("user", "Hi {name}")),
      "llm_kwargs": {"messages": [{"role": "user", "content": "Hi {name}"}]}}, None),
    ({"prompt_template": chat(("user", "Hi {name}")), "llm_kwargs": {}}, None),
    ({"prompt_template": chat(("system", "{{ a }}"), ("user", "{b}"), fmt="jinja2"),
      "llm_kwargs": {"system": "{{ a }}", "messages": [{"role": "user", "content": "{b}"}]}},
     {"a": 1, "b": 2}),
    ({"prompt_template": {"type": "chat", "messages": [
        {"role": "system", "content": [{"type": "text", "text": "{a}"}]},
        {"role": "user", "template_format": "jinja2",
         "content": [{"type": "text", "text": "{{ b }} {a}"}]}]},
      "llm_kwargs": {"messages": [{"role": "system", "content": "{a}"},
                                  {"role": "user", "content": [{"type": "text",
                                                                "text": "{{ b }} {a}"}]}]}},
     {"a": "A", "b": "B"}),
    ({"prompt_template": {"type": "completion", "template_format": "jinja2",
                          "content": [{"type": "text", "text": "{% for i in items %}{{ i }}\n{% endfor %}"}]},
      "llm_kwargs": {"prompt": "{% for i in items %}{{ i }}\n{% endfor %}"}}, {"items": [1, 2]}),
    ({"prompt_template": {"type": "chat", "messages": [
        {"role": "placeholder", "name": "history"},
        {"role": "user", "content": [{"type": "text", "text": "{q}"}]}]}, "llm_kwargs": None},
     {"q": "x"}),
    ({"prompt_template": {"type": "chat", "messages": [], "tools": [{"type": "variable"}]}}, {"q": 1}),
    ({"prompt_template": None, "llm_kwargs": {"prompt": "{q}"}}, {"q": 1}),
    ({"llm_kwargs": {"prompt": "{q}"}}, {"q": 1}),
    ({"prompt_template": {"type": "chat", "messages": [
        {"role": "user", "content": None}]}, "llm_kwargs": None}, {"q": 1}),
    ({"prompt_template": {"type": "chat", "messages": [
        {"role": "user", "content": None}]}, "llm_kwargs": None}, None),
    ({"prompt_template": chat(("user", "{q}")),
      "llm_kwargs": {"messages": ["no c-word", {"role": "user", "content": "{q}"}]}}, {"q": 1}),
    ({"prompt_template": chat(("user", "{q}")),
      "llm_kwargs": {"messages": ["has content", {"role": "user", "content": "{q}"}]}}, {"q": 1}),
    ({"prompt_template": chat(("user", "{q}")),
      "llm_kwargs": {"contents": [{"parts": [{"text": "{q}"}]}],
                     "history": [{"parts": [{"text": "{q}", "type": "x"}]}],
                     "generation_config": {"system_instruction": {"parts": [{"text": "{q}"}]}}}},
     {"q": "Q"}),
    ({"prompt_template": chat(("user", "{q}")),
      "llm_kwargs": {"system_instruction": [{"text": "{q}"}],
                     "generation_config": {"system_instruction": {"parts": [{"text": "{q}"}]}}}},
     {"q": "Q"}),
    ({"prompt_template": chat(("user", "{q}")),
      "llm_kwargs": {"system": [{"type": "text", "text": "{q}"}, {"type": "image", "text": "{q}"}],
                     "input": [{"role": "user", "content": [{"type": "input_text", "text": "{q}"}]}],
                     "tools": [{"type": "function", "function": {"description": "{q}"}}]}},
     {"q": "Q"}),
    ({"prompt_template": chat(("user", "{{ items.append(3) }}{{ items }}"),
                              ("user", "{{ items }}"), fmt="jinja2"),
      "llm_kwargs": {"messages": [{"role": "user", "content": "{{ items }}"}],
                     "system": "{{ items.append(4) }}{{ items|length }}"}}, {"items": [1]}),
]


def cases(count, seed):
    rng = random.Random(seed)
    out = [(copy.deepcopy(e), copy.deepcopy(v)) for e, v in CASES]
    while len(out) < len(CASES) + count:
        out.append((entry(rng), variables(rng)))
    return out


def load_sdk(path):
    spec = importlib.util.spec_from_file_location("sdk_template_cache", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def sdk_outcome(sdk, e, v):
    """(locally_renderable: True | False | "raises", outcome)."""
    try:
        local = bool(sdk.is_locally_renderable(copy.deepcopy(e)))
    except Exception:  # noqa: BLE001 - the SDK's raise is the outcome
        return "raises", {"raises": True}
    if not local:
        return False, {"not_local": True}
    try:
        return True, {"rendered": sdk.render_response(copy.deepcopy(e), copy.deepcopy(v))}
    except Exception:  # noqa: BLE001
        return True, {"raises": True}


def module_outcome(e, v):
    """(is_locally_renderable(e), outcome of render(e, v)); also checks that
    render leaves e as it was."""
    before = canon(e)
    local = plcache.is_locally_renderable(e)
    try:
        out = {"rendered": plcache.render(e, copy.deepcopy(v))}
    except plcache.NotRenderable:
        out = {"not_local": True}
    except plcache.RenderError:
        out = {"raises": True}
    if canon(e) != before:
        out = {"entry changed by render": True}
    return local, out


def canon(x):
    """Exact JSON text: 1, 1.0 and True stay distinct."""
    return json.dumps(x, sort_keys=True, ensure_ascii=False)


def check(e, v, want_local, want):
    """A list of what differs between render() and the SDK's outcome."""
    local, got = module_outcome(e, v)
    diffs = []
    if local != (want_local is True):
        diffs.append(f"is_locally_renderable {local}, SDK {want_local}")
    if canon(got) != canon(want):
        diffs.append(f"render {canon(got)[:600]}\n   SDK {canon(want)[:600]}")
    return diffs


def main(argv):
    if len(argv) < 2 or argv[0] not in ("compare", "table"):
        print(__doc__, file=sys.stderr)
        return 2
    sdk = load_sdk(argv[1])
    if argv[0] == "table":
        rows = []
        for e, v in cases(TABLE_COUNT, TABLE_SEED):
            local, want = sdk_outcome(sdk, e, v)
            rows.append({"entry": e, "variables": v, "locally_renderable": local, **want})
        import jinja2
        sdk_rev = argv[argv.index("--sdk-rev") + 1] if "--sdk-rev" in argv else "?"
        doc = {"about": "render() vs PromptLayer's Python SDK (promptlayer/template_cache.py "
                        "render_response, is_locally_renderable) at " + sdk_rev + ", made by "
                        "tests/system/sdk_render_cases.py table; jinja2 " + jinja2.__version__,
               "cases": rows}
        with open(argv[2], "w") as f:  # one case a line
            f.write('{"about": %s,\n "cases": [\n' % json.dumps(doc["about"]))
            f.write(",\n".join(json.dumps(r, ensure_ascii=False, separators=(",", ":"))
                               for r in rows))
            f.write("\n]}\n")
        print(f"{len(rows)} cases written to {argv[2]}")
        return 0
    count, seed = 20000, 1
    if "--count" in argv:
        count = int(argv[argv.index("--count") + 1])
    if "--seed" in argv:
        seed = int(argv[argv.index("--seed") + 1])
    kinds, bad = {}, 0
    for i, (e, v) in enumerate(cases(count, seed)):
        local, want = sdk_outcome(sdk, e, v)
        k = next(iter(want))
        if k == "rendered" and canon(want["rendered"]) == canon(e):
            k = "rendered (unchanged)"
        kinds[k] = kinds.get(k, 0) + 1
        diffs = check(e, v, local, want)
        if diffs:
            bad += 1
            if bad <= 20:
                print(f"case {i}: entry {canon(e)[:400]}\n  variables {canon(v)[:200]}")
                for d in diffs:
                    print("  " + d)
    total = len(CASES) + count
    print(f"{total} cases (seed {seed}): {kinds}; {bad} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
