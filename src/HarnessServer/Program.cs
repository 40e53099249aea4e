using HarnessServer.Data;
using HarnessServer.Http;
using HarnessServer.Identity;
using HarnessServer.Memory;
using HarnessServer.Observability;
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
app.MapMemory();

app.Run();

/// <summary>Entry point, visible to the functional tests' <c>WebApplicationFactory</c>.</summary>
public partial class Program;
