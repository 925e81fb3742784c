// A Node.js agent whose run stops for a human approval and is resumed later (issue 25): the first
// root span ends with task.status = "waiting"; the resume is a new trace with the same task.id.
// Usage: node wait.mjs http://127.0.0.1:PORT/v1/traces (waiting|resume) TASK_ID
import { context, trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";

const [url, part, taskId] = process.argv.slice(2);
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ "service.name": "node-agent" }),
  spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter({ url }))],
});
const tracer = provider.getTracer("node-agent");
const root = tracer.startSpan("invoke_agent billing", {
  attributes: {
    "gen_ai.operation.name": "invoke_agent",
    "gen_ai.agent.name": "node-billing",
    "task.trigger": "webhook",
    "task.id": taskId,
  },
});
const chat = tracer.startSpan("chat plan", {
  attributes: { "gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20 },
}, trace.setSpan(context.active(), root));
chat.end();
if (part === "waiting") {
  root.setAttribute("task.status", "waiting");
  root.setAttribute("task.waiting_reason", "approval");
}
root.end();
await provider.forceFlush();
await provider.shutdown();
process.stdout.write(JSON.stringify({ part }) + "\n");
