using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.Health;

namespace HarnessServer.Soak;

/// <summary>
/// The soak's reverse proxy: YARP on a loopback port, round robin over the replicas, an active health check on
/// <c>/healthz</c> every second and a passive one on transport failures, so a killed replica leaves the rotation and
/// a restarted one rejoins it. Responses stream through (SSE included); the activity timeout is long enough for an
/// idle event stream. An answer YARP made itself (the replica died under the request, or none was healthy) carries
/// <see cref="ErrorHeader"/>, so the soak counts it apart from the servers' own statuses.
/// </summary>
internal sealed class SoakProxy : IAsyncDisposable
{
    public const string ErrorHeader = "Soak-Proxy-Error";

    private readonly WebApplication _app;

    private SoakProxy(WebApplication app, string url)
    {
        _app = app;
        Url = url;
    }

    public string Url { get; }

    public static async Task<SoakProxy> StartAsync(IReadOnlyList<string> replicas)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        RouteConfig[] routes = [new() { RouteId = "harness", ClusterId = "replicas", Match = new RouteMatch { Path = "{**catch-all}" } }];
        ClusterConfig[] clusters =
        [
            new()
            {
                ClusterId = "replicas",
                LoadBalancingPolicy = "RoundRobin",
                Destinations = replicas.Select((url, i) => (Name: $"replica{i}", url))
                    .ToDictionary(d => d.Name, d => new DestinationConfig { Address = d.url }),
                HealthCheck = new HealthCheckConfig
                {
                    Active = new ActiveHealthCheckConfig
                    {
                        Enabled = true,
                        Interval = TimeSpan.FromSeconds(1),
                        Timeout = TimeSpan.FromSeconds(2),
                        Policy = HealthCheckConstants.ActivePolicy.ConsecutiveFailures,
                        Path = "/healthz",
                    },
                    Passive = new PassiveHealthCheckConfig
                    {
                        Enabled = true,
                        Policy = HealthCheckConstants.PassivePolicy.TransportFailureRate,
                        ReactivationPeriod = TimeSpan.FromSeconds(2),
                    },
                },
                Metadata = new Dictionary<string, string>
                {
                    // One failed probe takes a replica out: a killed process refuses connections at once.
                    [ConsecutiveFailuresHealthPolicyOptions.ThresholdMetadataName] = "1",
                },
                HttpRequest = new Yarp.ReverseProxy.Forwarder.ForwarderRequestConfig { ActivityTimeout = TimeSpan.FromMinutes(30) },
            },
        ];
        builder.Services.AddReverseProxy().LoadFromMemory(routes, clusters);
        var app = builder.Build();
        app.MapReverseProxy(proxy => proxy.Use(async (context, next) =>
        {
            context.Response.OnStarting(() =>
            {
                if (context.GetForwarderErrorFeature() is { } error)
                {
                    context.Response.Headers[ErrorHeader] = error.Error.ToString();
                }

                return Task.CompletedTask;
            });
            await next();
        }));
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new SoakProxy(app, address.TrimEnd('/'));
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
