using HarnessServer.Identity;
using HarnessServer.Memory;
using HarnessServer.Tests.Infrastructure;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace HarnessServer.Tests.Memory;

/// <summary>
/// The server with a scripted memory policy that denies <c>team:locked</c> and asks on <c>team:review</c> (the tenant's
/// real policy is exercised in MemoryGovernanceTests).
/// </summary>
public class MemoryApplication : HarnessApplication
{
    protected override void Configure(IDictionary<string, string?> settings) =>
        settings["Harness:Memory:ReembedInterval"] = "00:00:00.500";

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        base.ConfigureWebHost(builder);
        builder.ConfigureTestServices(services =>
        {
            services.AddSingleton<IMemoryPolicy>(new ScriptedPolicy());
        });
    }

    private sealed class ScriptedPolicy : IMemoryPolicy
    {
        public Task<MemoryPolicyOutcome> DecideAsync(CurrentUser user, string tool, string @namespace, CancellationToken cancellationToken) =>
            Task.FromResult(@namespace switch
            {
                "team:locked" => MemoryPolicyOutcome.Deny("team memory is read-only"),
                "team:review" => MemoryPolicyOutcome.Ask("a lead reviews shared notes"),
                _ => MemoryPolicyOutcome.Allow,
            });
    }
}

/// <summary>Every namespace searched through HNSW with iterative scan, never exactly.</summary>
public sealed class HnswOnlyMemoryApplication : MemoryApplication
{
    protected override void Configure(IDictionary<string, string?> settings)
    {
        base.Configure(settings);
        settings["Harness:Memory:ExactSearchMaxRows"] = "0";
    }
}
