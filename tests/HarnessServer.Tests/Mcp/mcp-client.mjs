// Drives /mcp with the official TypeScript SDK (@modelcontextprotocol/sdk, installed by scripts/provision.sh under
// .data/tools/mcp-sdk), standing in for an agent such as Claude Code. Reads a plan from stdin:
//   { "url": "...", "clients": [ { "token": "...", "headers": {...}, "steps": [ {"op":"list"} | {"op":"call", ...} ] } ] }
// The clients run at the same time; each step's outcome (and every progress notification) is one JSON line on stdout.
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(join(process.env.MCP_SDK_DIR, 'package.json'));
const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = require('@modelcontextprotocol/sdk/client/streamableHttp.js');

const out = (line) => process.stdout.write(JSON.stringify(line) + '\n');

let input = '';
for await (const chunk of process.stdin) input += chunk;
const plan = JSON.parse(input);

await Promise.all(plan.clients.map(async (spec, index) => {
  const headers = { ...(spec.headers ?? {}) };
  if (spec.token) headers.Authorization = `Bearer ${spec.token}`;
  const transport = new StreamableHTTPClientTransport(new URL(plan.url), { requestInit: { headers } });
  const client = new Client({ name: 'harness-tests', version: '1.0.0' });
  try {
    await client.connect(transport);
  } catch (error) {
    out({ client: index, op: 'connect', error: String(error), code: error.code ?? null });
    return;
  }

  for (const step of spec.steps) {
    try {
      if (step.op === 'list') {
        const listed = await client.listTools();
        out({ client: index, op: 'list', tools: listed.tools });
      } else if (step.op === 'call') {
        const options = { timeout: 120000, resetTimeoutOnProgress: true };
        if (step.progress) options.onprogress = (progress) => out({ client: index, op: 'progress', name: step.name, ...progress });
        const result = await client.callTool({ name: step.name, arguments: step.arguments ?? {}, ...(step.meta ? { _meta: step.meta } : {}) }, undefined, options);
        out({ client: index, op: 'call', name: step.name, result });
      }
    } catch (error) {
      out({ client: index, op: step.op, name: step.name ?? null, error: String(error), code: error.code ?? null });
    }
  }

  await client.close();
}));
