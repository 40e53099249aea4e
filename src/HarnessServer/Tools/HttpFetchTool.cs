using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
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
            ConnectCallback = ConnectAsync,
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
            catch (HttpRequestException e) when (e.InnerException is BlockedAddressException blocked)
            {
                return ToolOutcome.Failure("address_blocked", blocked.Message);
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

    private async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var addresses = IPAddress.TryParse(context.DnsEndPoint.Host, out var literal)
            ? [literal]
            : await Dns.GetHostAddressesAsync(context.DnsEndPoint.Host, cancellationToken);
        var permitted = addresses.Where(a => _options.AllowPrivateAddresses || IsPublic(a)).ToArray();
        if (permitted.Length == 0)
        {
            throw new BlockedAddressException(
                $"'{context.DnsEndPoint.Host}' resolves only to private, loopback or link-local addresses; http.fetch does not reach them.");
        }

        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(permitted, context.DnsEndPoint.Port, cancellationToken);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    internal static bool IsPublic(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        if (IPAddress.IsLoopback(address) || address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any)
            || address.Equals(IPAddress.Broadcast) || address.Equals(IPAddress.IPv6None))
        {
            return false;
        }

        if (address.AddressFamily == AddressFamily.InterNetworkV6)
        {
            var b = address.GetAddressBytes();
            return !(address.IsIPv6LinkLocal || address.IsIPv6SiteLocal || address.IsIPv6Multicast || address.IsIPv6Teredo
                     || (b[0] & 0xfe) == 0xfc // unique local fc00::/7
                     || (b[0] == 0x20 && b[1] == 0x02) // 6to4 can embed private IPv4
                     || (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b) // NAT64 64:ff9b::/96 and 64:ff9b:1::/48
                     || (b[0] == 0x01 && b[1] == 0x00 && b.AsSpan(2, 6).IndexOfAnyExcept((byte)0) < 0) // discard-only 100::/64
                     || b.AsSpan(0, 12).IndexOfAnyExcept((byte)0) < 0); // IPv4-compatible ::/96 (and ::, ::1)
        }

        var v4 = address.GetAddressBytes();
        return v4[0] switch
        {
            0 or 10 or 127 => false,
            100 when v4[1] is >= 64 and < 128 => false, // carrier-grade NAT
            169 when v4[1] == 254 => false, // link-local, cloud metadata
            172 when v4[1] is >= 16 and < 32 => false,
            192 when v4[1] == 168 => false,
            192 when v4[1] == 0 && v4[2] is 0 or 2 => false,
            198 when v4[1] is 18 or 19 => false,
            >= 224 => false, // multicast and reserved
            _ => true,
        };
    }

    public void Dispose() => _client.Dispose();

    private sealed class BlockedAddressException(string message) : Exception(message);
}
