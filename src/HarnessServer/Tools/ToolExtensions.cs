namespace HarnessServer.Tools;

internal static class ToolExtensions
{
    /// <summary>The per-tenant tool registry and the allow-listed HTTP client of <c>http.fetch</c>.</summary>
    public static WebApplicationBuilder AddHarnessTools(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddSingleton<ToolRegistry>();
        services.AddSingleton<ToolAdministration>();
        services.AddOptions<HttpFetchOptions>().BindConfiguration("Harness:HttpFetch")
            .Validate(o => o.MaxResponseBytes > 0 && o.TimeoutSeconds > 0 && o.MaxRedirects >= 0, "Harness:HttpFetch limits must be positive.")
            .ValidateOnStart();
        services.AddSingleton<HttpFetchAllowList>();
        services.AddSingleton<HttpFetchTool>();
        return builder;
    }
}
