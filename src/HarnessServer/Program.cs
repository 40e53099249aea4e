using HarnessServer.Agents;
using HarnessServer.Api;
using HarnessServer.Approvals;
using HarnessServer.Audit;
using HarnessServer.WebConsole;
using HarnessServer.Data;
using HarnessServer.Http;
using HarnessServer.Identity;
using HarnessServer.Mcp;
using HarnessServer.Memory;
using HarnessServer.Observability;
using HarnessServer.Pipeline;
using HarnessServer.Policies;
using HarnessServer.Sandbox;
using HarnessServer.Sessions;
using HarnessServer.Tools;
using HarnessServer.Webhooks;
using HarnessServer.Upstreams;

// Composition only, bottom layer first; tests/HarnessServer.Tests/Architecture holds the order the folders depend in.
var builder = WebApplication.CreateBuilder(args);

// Problem details for every error, request limits, JSON defaults.
builder.AddHarnessHttp();

// OpenTelemetry traces, metrics and logs; OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set.
builder.AddHarnessObservability();

// PostgreSQL with pgvector, the tenant-scoped DbContext, migrations and the cross-process change feed.
builder.AddHarnessData();
// One Data Protection key ring for every replica (console cookies, upstream credentials), in the database, encrypted at rest.
builder.AddHarnessDataProtection();

// JWT bearer against the configured OIDC issuer (or Entra ID), roles as authorization policies, and the request's
// tenant with just-in-time provisioning of users and teams.
builder.AddHarnessIdentity();
builder.AddHarnessTenancy();

// The per-tenant hash-chained audit trail: group-committed appends, signed checkpoints, verify and export.
builder.AddHarnessAudit();

// Stored policy versions and their compiled matrices; the tool registry.
builder.AddHarnessPolicies();
builder.AddHarnessTools();

// Session workspaces, and bubblewrap for every command (probed at start; never unsandboxed).
builder.AddHarnessSandbox();

// Upstream MCP servers whose tools run behind the pipeline (credentials encrypted with keys outside the database).
builder.AddHarnessUpstreams();

// Sessions, their stored tool calls and event stream, and workspace checkpoints.
builder.AddHarnessSessions();

// Namespaced memory on pgvector: embeddings (local or an OpenAI-compatible endpoint), search, re-embedding.
builder.AddHarnessMemory();

// Tenants' outbound webhooks: a signed, retried outbox of approval events.
builder.AddHarnessWebhooks();

// Approvals of held calls.
builder.AddHarnessApprovals();

// The tool-call pipeline: validate, decide, checkpoint, commit, execute, record; approved and interrupted calls.
builder.AddHarnessPipeline();

// Agent turns over an OpenAI-compatible model (Semantic Kernel) and their recovery.
builder.AddHarnessAgents();

// The HTTP routes.
builder.AddHarnessApi();

// /mcp: the same pipeline for MCP clients (Streamable HTTP, stateless), an OAuth 2.1 protected resource.
builder.AddHarnessMcp();
// The web console under /console: server-rendered pages, its own cookie session signed in with OIDC code flow + PKCE.
builder.AddHarnessConsole();

var app = builder.Build();

// `--migrate`: apply the migrations as the schema owner and exit (a release step; serving replicas never migrate).
if (await DatabaseMigrator.RunIfAskedAsync(app, args))
{
    return;
}

app.UseHarnessHttp();
app.UseAuthentication();
app.UseAuthorization();
app.UseHarnessTenancy();

app.MapHarnessHealth();
app.MapHarnessApiReference();
app.MapHarnessApi();
app.MapHarnessMcp();
app.MapHarnessConsole();

app.Run();

/// <summary>Entry point, visible to the functional tests' <c>WebApplicationFactory</c>.</summary>
public partial class Program;
