using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using HarnessServer.Http;
using Microsoft.Extensions.Options;

namespace HarnessServer.Tools;

/// <summary>
/// <c>http.fetch</c>: GET of an http(s) URL whose host is on the tenant's allow-list. The socket connects only to an
/// address checked after DNS resolution (no private, loopback, link-local, multicast or unspecified address), so a
/// DNS answer cannot steer it inside; redirects are followed by hand and every hop is checked again.
/// </summary>
internal sealed class HttpFetchTool : IDisposable
{
    private readonly HttpFetchOptions _options;
    private readonly HttpClient _client;

    public HttpFetchTool(IOptions<HttpFetchOptions> options)
    {
        _options = options.Value;
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            UseProxy = false,
            UseCookies = false,
            AutomaticDecompression = DecompressionMethods.All,
            ConnectCallback = AddressGuard.ConnectCallback(
                (_, address) => _options.AllowPrivateAddresses || AddressGuard.IsPublic(address),
                host => $"'{host}' resolves only to private, loopback or link-local addresses; http.fetch does not reach them."),
            PooledConnectionLifetime = TimeSpan.FromMinutes(1),
        };
        _client = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(_options.TimeoutSeconds) };
    }

    /// <summary>Fetches <paramref name="url"/> when its host, and the host of every redirect, is on <paramref name="allowed"/>.</summary>
    public async Task<ToolOutcome> FetchAsync(IReadOnlyList<string> allowed, string url, CancellationToken cancellationToken)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri))
        {
            return ToolOutcome.Failure("invalid_url", $"'{url}' is not an absolute URL.");
        }

        for (var hop = 0; ; hop++)
        {
            if (Refusal(allowed, uri) is { } refusal)
            {
                return refusal;
            }

            using var request = new HttpRequestMessage(HttpMethod.Get, uri);
            HttpResponseMessage response;
            try
            {
                response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            }
            catch (HttpRequestException e) when (AddressGuard.Refusal(e) is { } blocked)
            {
                return ToolOutcome.Failure("address_blocked", blocked);
            }
            catch (HttpRequestException e)
            {
                return ToolOutcome.Failure("fetch_failed", $"Fetching {uri.Host} failed: {e.Message}");
            }
            catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                return ToolOutcome.Failure("fetch_timeout", $"Fetching {uri} took longer than {_options.TimeoutSeconds} s.");
            }

            using (response)
            {
                if ((int)response.StatusCode is >= 300 and < 400 && response.Headers.Location is { } location)
                {
                    if (hop >= _options.MaxRedirects)
                    {
                        return ToolOutcome.Failure("too_many_redirects", $"More than {_options.MaxRedirects} redirects from {url}.");
                    }

                    uri = location.IsAbsoluteUri ? location : new Uri(uri, location);
                    continue;
                }

                var (body, truncated) = await ReadCappedAsync(response, cancellationToken);
                var headers = new JsonObject();
                foreach (var (name, values) in response.Headers.Concat(response.Content.Headers))
                {
                    headers[name.ToLowerInvariant()] = string.Join(", ", values);
                }

                var result = new JsonObject
                {
                    ["status"] = (int)response.StatusCode,
                    ["headers"] = headers,
                    ["body"] = body.Value,
                    ["truncated"] = truncated,
                };
                // A body that is not NUL-free UTF-8 (an image, a NUL in a page) is given as base64, without loss.
                if (body.Base64)
                {
                    result["encoding"] = OutputText.Base64Encoding;
                }

                return ToolOutcome.Success(result);
            }
        }
    }

    private static ToolOutcome? Refusal(IReadOnlyList<string> allowed, Uri uri)
    {
        if (uri.Scheme is not ("http" or "https"))
        {
            return ToolOutcome.Failure("scheme_not_allowed", $"Only http and https URLs can be fetched, not '{uri.Scheme}'.");
        }

        if (!string.IsNullOrEmpty(uri.UserInfo))
        {
            return ToolOutcome.Failure("credentials_in_url", "URLs with user information are refused.");
        }

        var host = uri.IdnHost.TrimEnd('.').ToLowerInvariant();
        return allowed.Any(domain => HttpFetchAllowList.Matches(domain, host))
            ? null
            : ToolOutcome.Failure("domain_not_allowed", $"'{host}' is not on this tenant's http.fetch allow-list.");
    }

    private async Task<(OutputText Body, bool Truncated)> ReadCappedAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
        var buffer = new byte[_options.MaxResponseBytes + 1];
        var read = 0;
        int n;
        while (read < buffer.Length && (n = await stream.ReadAsync(buffer.AsMemory(read), cancellationToken)) > 0)
        {
            read += n;
        }

        var truncated = read > _options.MaxResponseBytes;
        var kept = buffer.AsSpan(0, Math.Min(read, _options.MaxResponseBytes));
        return (OutputText.Of(kept, truncated ? $"\n[response truncated at {_options.MaxResponseBytes} bytes]" : null), truncated);
    }

    public void Dispose() => _client.Dispose();
}
