namespace HarnessServer.Upstreams;

internal static class UpstreamExtensions
{
    /// <summary>Upstream MCP servers behind the pipeline: their client, credentials, administration and executor.</summary>
    public static WebApplicationBuilder AddHarnessUpstreams(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<UpstreamOptions>().BindConfiguration("Harness:Upstreams")
            .Validate(o => o.IsValid(), "Harness:Upstreams needs a positive DefaultTimeoutSeconds and a MaxTimeoutSeconds at least as large.")
            .ValidateOnStart();
        // The upstream's answer is the call's result: no redirect may carry the tenant's credential elsewhere, and the
        // registration's time limit (not HttpClient's) cuts a slow upstream.
        builder.Services.AddHttpClient(McpUpstreamClient.HttpClientName, client => client.Timeout = Timeout.InfiniteTimeSpan)
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler { AllowAutoRedirect = false, UseCookies = false });
        builder.Services.AddSingleton<UpstreamCredentials>();
        builder.Services.AddSingleton<McpUpstreamClient>();
        builder.Services.AddSingleton<McpUpstreamCalls>();
        builder.Services.AddScoped<McpUpstreamAdministration>();
        return builder;
    }
}
