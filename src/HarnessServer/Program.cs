using HarnessServer.Agents;
using HarnessServer.Audit;
using HarnessServer.Data;
using HarnessServer.Http;
using HarnessServer.Identity;
using HarnessServer.Memory;
using HarnessServer.Observability;
using HarnessServer.Pipeline;
using HarnessServer.Sandbox;
using HarnessServer.Tenancy;

var builder = WebApplication.CreateBuilder(args);

// Problem details for every error, request limits, JSON defaults.
builder.AddHarnessHttp();

// OpenTelemetry traces, metrics and logs; OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set.
builder.AddHarnessObservability();

// JWT bearer against the configured OIDC issuer (or Entra ID), roles as authorization policies.
builder.AddHarnessIdentity();

// PostgreSQL with pgvector, the tenant-scoped DbContext and migrations.
builder.AddHarnessData();

// The tenant of the request and just-in-time provisioning of users and teams.
builder.AddHarnessTenancy();

// The per-tenant hash-chained audit trail: group-committed appends, signed checkpoints, verify and export.
builder.AddHarnessAudit();

// Session workspaces, and bubblewrap for every command (probed at start; never unsandboxed).
builder.AddHarnessSandbox();

// Policies, the tool registry, sessions, approvals and the tool-call pipeline.
builder.AddHarnessPipeline();

// Agent turns over an OpenAI-compatible model (Semantic Kernel), their recovery, and workspace checkpoints.
builder.AddHarnessAgents();

// Namespaced memory on pgvector: embeddings (local or an OpenAI-compatible endpoint), search, re-embedding.
builder.AddHarnessMemory();

var app = builder.Build();

app.UseHarnessHttp();
app.UseAuthentication();
app.UseAuthorization();
app.UseHarnessTenancy();

app.MapHarnessHealth();
app.MapHarnessApiReference();
app.MapIdentity();
app.MapAudit();
app.MapHarnessPipeline();
app.MapAgents();
app.MapMemory();

app.Run();

/// <summary>Entry point, visible to the functional tests' <c>WebApplicationFactory</c>.</summary>
public partial class Program;
