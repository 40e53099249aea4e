using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using HarnessServer.Sandbox;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace HarnessServer.Tests.Sandbox;

public sealed class SandboxRegistrationTests
{
    [Fact]
    public async Task Registers_the_sandbox_probe_and_a_ready_health_check()
    {
        var root = Path.Combine(Path.GetTempPath(), $"harness-sandbox-di-{Guid.NewGuid():N}");
        var builder = WebApplication.CreateBuilder();
        builder.Configuration["Harness:WorkspacesPath"] = root;
        builder.AddHarnessSandbox();
        // The sandbox's registration alone: the workspace-sharing heartbeat needs a database, given here one that no
        // server listens on (its check is not the one under test).
        await using var unreachable = Npgsql.NpgsqlDataSource.Create("Host=127.0.0.1;Port=1;Database=none;Timeout=1");
        builder.Services.AddSingleton(new HarnessServer.Data.DatabaseSources(unreachable, unreachable));
        await using var app = builder.Build();
        try
        {
            await app.StartAsync();

            var health = await app.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync(c => c.Name == "sandbox");

            Assert.True(app.Services.GetRequiredService<SandboxProbe>().IsAvailable);
            Assert.Equal(HealthStatus.Healthy, health.Entries["sandbox"].Status);
            Assert.Contains("ready", health.Entries["sandbox"].Tags);
            await app.StopAsync();
        }
        finally
        {
            if (Directory.Exists(root))
            {
                Directory.Delete(root, recursive: true);
            }
        }
    }

    [Theory]
    [InlineData("SandboxUid", "0")]
    [InlineData("MaxTimeoutSeconds", "5")]
    [InlineData("PrlimitPath", "/opt/prlimit")]
    [InlineData("TenantUidBase", "0")]
    [InlineData("TenantUidBase", "999")]
    [InlineData("TenantUidBase", "65534")]
    [InlineData("TenantUidBase", "65535")]
    [InlineData("TenantUidBase", "2147483647")]
    [InlineData("TenantUidBase", "-200000")]
    public void Refuses_unsafe_options_at_start(string key, string value)
    {
        var builder = WebApplication.CreateBuilder();
        builder.Configuration[$"Harness:Sandbox:{key}"] = value;
        builder.AddHarnessSandbox();
        using var app = builder.Build();

        var error = Assert.Throws<OptionsValidationException>(() => _ = app.Services.GetRequiredService<IOptions<SandboxOptions>>().Value);

        Assert.Contains($"Harness:Sandbox:{key}", error.Message);
    }

    [Fact]
    public void Refuses_a_tenant_uid_range_that_starts_at_or_below_the_probe_user()
    {
        Assert.Contains(new SandboxOptions { SandboxUid = 250_000 }.Problems(), p => p.Contains("TenantUidBase"));
        Assert.Empty(new SandboxOptions { SandboxUid = 250_000, TenantUidBase = 250_001 }.Problems());
    }

    [Fact]
    public void Tenant_user_ids_stop_before_they_leave_the_signed_32_bit_range()
    {
        var last = SandboxOptions.MaxTenantUid;

        Assert.Equal(new SandboxUser(last, last), TenantSandboxUsers.UserAt(200_000, last - 200_000));
        Assert.Equal(SandboxErrors.SandboxUnavailable,
            Assert.Throws<SandboxException>(() => TenantSandboxUsers.UserAt(200_000, last - 200_000 + 1)).Code);
        Assert.Throws<SandboxException>(() => TenantSandboxUsers.UserAt(200_000, -1));
    }
}
