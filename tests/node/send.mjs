// A Node.js agent as the README describes it: GenAI spans with task.trigger / task.id (model calls
// with their model, provider and cache tokens), sent with
// the OpenTelemetry JS SDK's OTLP/HTTP protobuf exporter (chunked bodies, no Content-Length).
// Usage: node send.mjs http://127.0.0.1:PORT/v1/traces [token]
// Prints {"spans": [span ids...]} on stdout once everything was exported.
import { context, trace, SpanStatusCode } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";

const [url, token] = process.argv.slice(2);
const exporter = new OTLPTraceExporter({ url, headers: token ? { Authorization: `Bearer ${token}` } : {} });
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ "service.name": "node-agent" }),
  spanProcessors: [new BatchSpanProcessor(exporter, { maxExportBatchSize: 4, scheduledDelayMillis: 50 })],
});
const tracer = provider.getTracer("node-agent");
const ids = [];

function start(name, attributes, parent) {
  // No context manager is registered: the parent is passed explicitly.
  const ctx = parent ? trace.setSpan(context.active(), parent) : context.active();
  const span = tracer.startSpan(name, { attributes }, ctx);
  ids.push(span.spanContext().spanId);
  return span;
}

function execution(taskId, { toolFails = false, failWith = null, score = null } = {}) {
  const root = start("invoke_agent billing", {
    "gen_ai.operation.name": "invoke_agent",
    "gen_ai.agent.name": "node-billing",
    "task.trigger": "webhook",
    "task.id": taskId,
  });
  // Two models, each call with its cache part of the input (input counts every input token, the
  // cache parts included, as the GenAI conventions define it).
  const calls = {
    plan: {
      "gen_ai.request.model": "gpt-4o-mini",
      "gen_ai.provider.name": "openai",
      "gen_ai.usage.input_tokens": 1200,
      "gen_ai.usage.cache_read.input_tokens": 1024,
      "gen_ai.usage.output_tokens": 30,
    },
    answer: {
      "gen_ai.request.model": "claude-sonnet-4-5",
      "gen_ai.provider.name": "anthropic",
      "gen_ai.usage.input_tokens": 2000,
      "gen_ai.usage.cache_creation.input_tokens": 1500,
      "gen_ai.usage.output_tokens": 200,
    },
  };
  for (const [step, usage] of Object.entries(calls)) {
    const chat = start(`chat ${step}`, { "gen_ai.operation.name": "chat", ...usage }, root);
    chat.end();
  }
  // The run's totals, as agent spans repeat them: not counted again.
  root.setAttribute("gen_ai.usage.input_tokens", 3200);
  root.setAttribute("gen_ai.usage.output_tokens", 230);
  const tool = start("execute_tool lookup", { "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup" }, root);
  if (toolFails) {
    tool.setAttribute("error.type", "ToolError");
    tool.setStatus({ code: SpanStatusCode.ERROR, message: "lookup failed" });
  }
  tool.end();
  if (score !== null) {
    root.addEvent("gen_ai.evaluation.result", {
      "gen_ai.evaluation.name": "relevance",
      "gen_ai.evaluation.score.value": score,
      "gen_ai.evaluation.score.label": "pass",
    });
  }
  if (failWith) {
    const err = new Error("the model did not answer in time");
    err.name = failWith;
    root.recordException(err);
  }
  if (toolFails || failWith) root.setStatus({ code: SpanStatusCode.ERROR, message: failWith || "tool failed" });
  root.end();
}

execution("n-ok");
execution("n-tool", { toolFails: true });
execution("n-fail", { failWith: "TimeoutError" });
execution("n-eval", { score: 0.9 });
await provider.forceFlush();
await provider.shutdown();
process.stdout.write(JSON.stringify({ spans: ids }) + "\n");
