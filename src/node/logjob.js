// logjob.js -- log jobs PromptLayer accepts, built from an OpenAI chat
// completion or an Anthropic message.
//
// plcache-worker forwards each job on plcache's Redis list to PromptLayer's
// POST /log-request, which refuses (422) a body that is not a Log Request as
// PromptLayer documents it (https://docs.promptlayer.com/reference/log-request):
// `input` and `output` are Prompt Blueprints whose chat content is a list of
// blocks, and the two request times are required. These builders make that
// body from what the app already has: the arguments it gave its LLM client,
// the answer, and when the call began and ended.
"use strict";

const OPENAI_NOT_PARAMETERS = new Set(["model", "messages", "tools", "tool_choice", "functions",
  "function_call", "stream", "stream_options"]);
const ANTHROPIC_NOT_PARAMETERS = new Set(["model", "messages", "system", "tools", "tool_choice",
  "stream"]);

const text = (s) => ({ type: "text", text: s });

// Epoch milliseconds (Date.now()), a Date, or an ISO string -> ISO 8601 UTC.
function isoTime(t) {
  if (t instanceof Date) return t.toISOString();
  if (typeof t === "number" && Number.isFinite(t)) return new Date(t).toISOString();
  if (typeof t === "string" && !Number.isNaN(Date.parse(t))) return new Date(t).toISOString();
  throw new TypeError("request times are Date.now() milliseconds, Dates or ISO 8601 strings");
}

function openaiContent(content) {
  if (content === null || content === undefined) return [];
  if (typeof content === "string") return [text(content)];
  return content.map((part) => {
    switch (part.type) {
      case "text": case "input_text": case "output_text": return text(part.text ?? "");
      case "image_url":
        return { type: "image_url",
                 image_url: typeof part.image_url === "string" ? { url: part.image_url } : part.image_url };
      case "refusal": return text(part.refusal ?? "");
      default: return text(`[${part.type} part not logged]`); // audio, files: no blueprint block
    }
  });
}

function openaiToolCalls(calls) {
  return (calls ?? []).map((c) => ({
    id: c.id ?? "", type: "function",
    function: { name: c.function?.name ?? "", arguments: c.function?.arguments ?? "" },
  }));
}

function openaiMessage(m) {
  const role = m.role ?? "user";
  const msg = { role, content: openaiContent(m.content) };
  if (m.name && role !== "function") msg.name = m.name;
  if (role === "assistant") {
    if (m.tool_calls?.length) msg.tool_calls = openaiToolCalls(m.tool_calls);
    if (m.function_call) {
      msg.function_call = { name: m.function_call.name ?? "", arguments: m.function_call.arguments ?? "" };
    }
    if (m.refusal && msg.content.length === 0) msg.content = [text(m.refusal)];
  } else if (role === "tool") {
    msg.tool_call_id = m.tool_call_id ?? "";
  } else if (role === "function") {
    msg.name = m.name ?? "";
  }
  return msg;
}

function common(job, opts) {
  const { tags, metadata, promptName, promptVersionNumber, promptInputVariables, ...extra } = opts;
  if (tags?.length) job.tags = tags.map(String);
  if (metadata && Object.keys(metadata).length) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") throw new TypeError(`metadata.${k}: PromptLayer takes string values only`);
    }
    job.metadata = { ...metadata };
  }
  if (promptName !== undefined) job.prompt_name = promptName;
  if (promptVersionNumber !== undefined) job.prompt_version_number = promptVersionNumber;
  if (promptInputVariables !== undefined) job.prompt_input_variables = { ...promptInputVariables };
  return Object.assign(job, extra); // score, status, error_type, error_message, price, ...
}

function pick(request, skip) {
  return Object.fromEntries(Object.entries(request).filter(([k]) => !skip.has(k)));
}

// A Log Request for one OpenAI chat completion: `request` is what was given to
// client.chat.completions.create, `response` its answer, `start`/`end` when the
// call began and ended. opts: tags, metadata (string values), promptName,
// promptVersionNumber, promptInputVariables, and any other Log Request field
// (score, status, error_type, ...) copied as given.
function logRequestFromOpenAI(request, response, start, end, opts = {}) {
  const input = { type: "chat", messages: (request.messages ?? []).map(openaiMessage) };
  for (const k of ["tools", "functions"]) if (request[k]?.length) input[k] = request[k];
  for (const k of ["tool_choice", "function_call"]) if (request[k] != null) input[k] = request[k];
  const choice = response?.choices?.[0];
  const usage = response?.usage ?? {};
  return common({
    provider: "openai",
    model: response?.model ?? request.model ?? "",
    input,
    output: { type: "chat", messages: choice ? [openaiMessage(choice.message ?? { role: "assistant" })] : [] },
    request_start_time: isoTime(start),
    request_end_time: isoTime(end),
    parameters: pick(request, OPENAI_NOT_PARAMETERS),
    function_name: "openai.chat.completions.create",
    api_type: "chat-completions",
    input_tokens: usage.prompt_tokens ?? 0,
    output_tokens: usage.completion_tokens ?? 0,
  }, opts);
}

// Anthropic content (a string or blocks) -> { blocks, calls, results }.
function anthropicBlocks(content) {
  if (typeof content === "string") return { blocks: [text(content)], calls: [], results: [] };
  const out = { blocks: [], calls: [], results: [] };
  for (const b of content ?? []) {
    switch (b.type) {
      case "text": out.blocks.push(text(b.text ?? "")); break;
      case "thinking":
        out.blocks.push(b.signature ? { type: "thinking", thinking: b.thinking ?? "", signature: b.signature }
                                    : { type: "thinking", thinking: b.thinking ?? "" });
        break;
      case "image": {
        const src = b.source ?? {};
        const url = src.type === "url" ? src.url : `data:${src.media_type ?? "image/png"};base64,${src.data ?? ""}`;
        out.blocks.push({ type: "image_url", image_url: { url } });
        break;
      }
      case "tool_use":
        out.calls.push({ id: b.id ?? "", type: "function",
                         function: { name: b.name ?? "", arguments: JSON.stringify(b.input ?? {}) } });
        break;
      case "tool_result":
        out.results.push({ role: "tool", tool_call_id: b.tool_use_id ?? "",
                           content: anthropicBlocks(b.content ?? []).blocks });
        break;
      default: out.blocks.push(text(`[${b.type} block not logged]`));
    }
  }
  return out;
}

function anthropicMessages(m) {
  const { blocks, calls, results } = anthropicBlocks(m.content);
  const msgs = [...results];
  if (blocks.length || calls.length || !results.length) {
    const msg = { role: m.role ?? "user", content: blocks };
    if (calls.length) msg.tool_calls = calls;
    msgs.push(msg);
  }
  return msgs;
}

// A Log Request for one Anthropic message (client.messages.create); arguments
// as for logRequestFromOpenAI.
function logRequestFromAnthropic(request, response, start, end, opts = {}) {
  const messages = [];
  if (request.system) messages.push({ role: "system", content: anthropicBlocks(request.system).blocks });
  for (const m of request.messages ?? []) messages.push(...anthropicMessages(m));
  const input = { type: "chat", messages };
  if (request.tools?.length) {
    input.tools = request.tools.map((t) => ({ type: "function",
      function: { name: t.name ?? "", description: t.description ?? "", parameters: t.input_schema ?? {} } }));
  }
  if (request.tool_choice != null) input.tool_choice = request.tool_choice;
  const { blocks, calls } = anthropicBlocks(response?.content ?? []);
  const out = { role: "assistant", content: blocks };
  if (calls.length) out.tool_calls = calls;
  const usage = response?.usage ?? {};
  return common({
    provider: "anthropic",
    model: response?.model ?? request.model ?? "",
    input,
    output: { type: "chat", messages: response ? [out] : [] },
    request_start_time: isoTime(start),
    request_end_time: isoTime(end),
    parameters: pick(request, ANTHROPIC_NOT_PARAMETERS),
    function_name: "anthropic.messages.create",
    input_tokens: usage.input_tokens ?? 0,
    output_tokens: usage.output_tokens ?? 0,
  }, opts);
}

// Queues one log job with one LPUSH, through an ioredis or node-redis client;
// resolves to the queue's length.
async function push(redis, job, prefix = "pl:") {
  const key = `${prefix}track`;
  const text = JSON.stringify(job);
  return typeof redis.lPush === "function" ? redis.lPush(key, text) : redis.lpush(key, text);
}

module.exports = { logRequestFromOpenAI, logRequestFromAnthropic, push };
