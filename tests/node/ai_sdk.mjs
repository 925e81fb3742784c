// Vercel AI SDK agents (npm `ai` 7, mock models from `ai/test`) traced by `@ai-sdk/otel`, sent over
// OTLP/HTTP protobuf as an app would: FORMAT `v7` (`OpenTelemetry`, GenAI spans) or `legacy`
// (`LegacyOpenTelemetry`, the `ai.*` spans of AI SDK 6 and earlier).
// Usage: node ai_sdk.mjs http://127.0.0.1:PORT/v1/traces v7|legacy   (or `-` as the URL: spans as JSON)
// Runs, each with `functionId` naming the agent and the task's trigger and id given as the README says
// (v7: `enrichSpan` from the runtime context; legacy: the runtime context, `ai.settings.context.task.*`):
//   gt-1 generateText, one tool call then text (50/10 + 80/20 tokens)   agent invoice-agent, trigger email
//   st-1 streamText, the same, streamed                                  agent invoice-agent, trigger email
//   go-1 generateObject (30/5)                                           agent extractor, trigger api
//   so-1 streamObject (30/5)                                             agent extractor, trigger api
//   gt-2 generateText whose tool throws, then text (40/8 + 60/12)        agent invoice-agent, trigger email
// Prints {"format": FORMAT} once everything was exported.
// `node ai_sdk.mjs shape v7|legacy ok|tool_raises`: one run (agent `weather`, the tool, then an answer;
// 50/10 + 80/20 tokens; `tool_raises`: the tool throws and the model answers anyway) printed in the
// form of tests/frameworks/shapes/*.json (regenerate: tests/frameworks/ai_sdk_shapes.sh).
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { LegacyOpenTelemetry, OpenTelemetry } from "@ai-sdk/otel";
import {
  generateObject,
  generateText,
  jsonSchema,
  registerTelemetry,
  simulateReadableStream,
  stepCountIs,
  streamObject,
  streamText,
  tool,
} from "ai";
import { MockLanguageModelV4 } from "ai/test";

const shapeMode = process.argv[2] === "shape";
const [url, format, scenario] = shapeMode ? ["-", ...process.argv.slice(3)] : process.argv.slice(2);
const memory = new InMemorySpanExporter();
const exporter = url === "-" ? memory : new OTLPTraceExporter({ url });
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ "service.name": "ai-sdk-agent" }),
  spanProcessors: [new SimpleSpanProcessor(exporter)],
});
const tracer = provider.getTracer("ai");

// The trigger and task id travel in each call's runtime context.
const task = (ctx) => ({ "task.trigger": ctx?.task?.trigger, "task.id": ctx?.task?.id });
if (format === "v7") {
  registerTelemetry(
    new OpenTelemetry({
      tracer,
      agentSpanName: "functionId",
      enrichSpan: ({ spanType, runtimeContext }) => (spanType === "operation" ? task(runtimeContext) : undefined),
    }),
  );
} else if (format === "legacy") {
  registerTelemetry(new LegacyOpenTelemetry({ tracer }));
} else {
  throw new Error(`format: v7 or legacy, not ${format}`);
}

const usage = (input, output) => ({
  inputTokens: { total: input, noCache: input, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: output, text: output, reasoning: undefined },
});
const finish = (unified) => ({ unified, raw: unified });
const callTool = (id, input, output) => ({
  content: [{ type: "tool-call", toolCallId: id, toolName: "lookup", input: JSON.stringify({ invoice: "1" }) }],
  finishReason: finish("tool-calls"),
  usage: usage(input, output),
  warnings: [],
});
const answer = (text, input, output) => ({
  content: [{ type: "text", text }],
  finishReason: finish("stop"),
  usage: usage(input, output),
  warnings: [],
});
const streamed = (result) => ({
  stream: simulateReadableStream({
    chunks: [
      { type: "stream-start", warnings: [] },
      ...result.content.flatMap((c) =>
        c.type === "text"
          ? [
              { type: "text-start", id: "t" },
              { type: "text-delta", id: "t", delta: c.text },
              { type: "text-end", id: "t" },
            ]
          : [c],
      ),
      { type: "finish", finishReason: result.finishReason, usage: result.usage },
    ],
  }),
});
const lookup = (fails) =>
  tool({
    description: "Look an invoice up.",
    inputSchema: jsonSchema({ type: "object", properties: { invoice: { type: "string" } }, required: ["invoice"] }),
    execute: async ({ invoice }) => {
      if (fails) throw new Error("lookup service down");
      return { invoice, amount: 5 };
    },
  });
const options = (functionId, trigger, id) => ({
  telemetry: { functionId, includeRuntimeContext: { task: true } },
  runtimeContext: { task: { trigger, id } },
});
const schema = jsonSchema({ type: "object", properties: { total: { type: "number" } }, required: ["total"] });

async function runs() {
  await generateText({
    model: new MockLanguageModelV4({ modelId: "mock-invoice-v1", doGenerate: [callTool("c1", 50, 10), answer("paid", 80, 20)] }),
    prompt: "pay invoice 1",
    tools: { lookup: lookup(false) },
    stopWhen: stepCountIs(3),
    ...options("invoice-agent", "email", "gt-1"),
  });
  const st = streamText({
    model: new MockLanguageModelV4({
      modelId: "mock-invoice-v1",
      doStream: [streamed(callTool("c2", 50, 10)), streamed(answer("paid", 80, 20))],
    }),
    prompt: "pay invoice 1",
    tools: { lookup: lookup(false) },
    stopWhen: stepCountIs(3),
    ...options("invoice-agent", "email", "st-1"),
  });
  await st.consumeStream();
  await st.text;
  await generateObject({
    model: new MockLanguageModelV4({ modelId: "mock-extract-v1", doGenerate: answer('{"total": 5}', 30, 5) }),
    prompt: "extract the total",
    schema,
    ...options("extractor", "api", "go-1"),
  });
  const so = streamObject({
    model: new MockLanguageModelV4({ modelId: "mock-extract-v1", doStream: streamed(answer('{"total": 5}', 30, 5)) }),
    prompt: "extract the total",
    schema,
    ...options("extractor", "api", "so-1"),
  });
  for await (const _ of so.partialObjectStream); // the object resolves once its stream is read
  await so.object;
  await generateText({
    model: new MockLanguageModelV4({ modelId: "mock-invoice-v1", doGenerate: [callTool("c3", 40, 8), answer("sorry", 60, 12)] }),
    prompt: "pay invoice 2",
    tools: { lookup: lookup(true) },
    stopWhen: stepCountIs(3),
    ...options("invoice-agent", "email", "gt-2"),
  });

}

async function shapeRun() {
  await generateText({
    model: new MockLanguageModelV4({ modelId: "scripted-model", doGenerate: [callTool("c1", 50, 10), answer("sunny", 80, 20)] }),
    prompt: "weather in Paris?",
    tools: { lookup: lookup(scenario === "tool_raises") },
    stopWhen: stepCountIs(3),
    telemetry: { functionId: "weather" },
  });
}

// The shape files' form (tests/frameworks/dump.py): spans in tree order, parents as indexes, values
// that differ per run masked.
const KINDS = ["INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"];
const CODES = ["UNSET", "OK", "ERROR"];
const varies = (k) => /duration|msTo|PerSecond|timestamp|time_to_first_chunk|response\.id$|stack/.test(k);
const masked = (attrs) =>
  Object.fromEntries(Object.keys(attrs ?? {}).sort().map((k) => [k, varies(k) ? "<varies>" : attrs[k]]));
function shape(spans) {
  const ids = new Set(spans.map((s) => s.spanContext().spanId));
  const children = new Map();
  for (const s of spans) {
    const p = s.parentSpanContext?.spanId;
    const key = p && ids.has(p) ? p : null;
    children.set(key, [...(children.get(key) ?? []), s]);
  }
  const ordered = [];
  const visit = (parent) => {
    const kids = (children.get(parent) ?? []).sort((a, b) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1] || a.name.localeCompare(b.name));
    for (const s of kids) {
      ordered.push(s);
      visit(s.spanContext().spanId);
    }
  };
  visit(null);
  const index = new Map(ordered.map((s, i) => [s.spanContext().spanId, i]));
  return ordered.map((s, i) => ({
    i,
    parent: index.get(s.parentSpanContext?.spanId) ?? null,
    name: s.name,
    kind: KINDS[s.kind],
    scope: s.instrumentationScope.name,
    status: { code: CODES[s.status.code], description: s.status.message ?? null },
    attributes: masked(s.attributes),
    events: s.events.map((e) => ({ name: e.name, attributes: masked(e.attributes) })),
  }));
}

if (shapeMode) {
  await shapeRun();
  await provider.forceFlush();
  const versions = { ai: "7.0.185", "@ai-sdk/otel": "1.0.185", "@opentelemetry/sdk-trace-base": "2.12.0" };
  const out = { case: `ai_sdk_${format}`, scenario, versions, raised: null, resource: { "service.name": "ai-sdk-agent" } };
  console.log(JSON.stringify({ ...out, spans: shape(memory.getFinishedSpans()) }, null, 1));
  await provider.shutdown();
  process.exit(0);
}
await runs();
await provider.forceFlush();
if (url === "-") {
  const spans = memory.getFinishedSpans().map((s) => ({
    name: s.name,
    id: s.spanContext().spanId,
    parent: s.parentSpanContext?.spanId ?? null,
    status: s.status.code,
    attributes: Object.fromEntries(
      Object.entries(s.attributes).filter(([k]) => !/prompt|messages|response\.text|input\.|output\.|result|args|toolCall\.(args|result)|schema/.test(k)),
    ),
    events: s.events.map((e) => e.name),
  }));
  console.log(JSON.stringify(spans, null, 1));
}
await provider.shutdown();
console.log(JSON.stringify({ format }));
