namespace HarnessServer.Http;

/// <summary>Request limits from the <c>Harness</c> section.</summary>
internal sealed class HarnessHttpOptions
{
    public long MaxRequestBodyBytes { get; set; } = 10 * 1024 * 1024;
}
