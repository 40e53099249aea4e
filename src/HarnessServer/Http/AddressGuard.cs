using System.Net;
using System.Net.Sockets;

namespace HarnessServer.Http;

/// <summary>
/// Outbound HTTP that reaches only the addresses its caller permits (<c>http.fetch</c>, webhooks): the host is resolved
/// and every address checked when each connection is made, so a name accepted earlier cannot point at a private address
/// later (DNS rebinding), and a redirect is checked like the first request.
/// </summary>
internal static class AddressGuard
{
    /// <summary>
    /// A <see cref="SocketsHttpHandler.ConnectCallback"/> that connects only to the resolved addresses
    /// <paramref name="permits"/> accepts; when none is, the request fails with <paramref name="refusal"/>'s message,
    /// which <see cref="Refusal"/> gives back.
    /// </summary>
    public static Func<SocketsHttpConnectionContext, CancellationToken, ValueTask<Stream>> ConnectCallback(
        Func<SocketsHttpConnectionContext, IPAddress, bool> permits, Func<string, string> refusal) =>
        async (context, cancellationToken) =>
        {
            var host = context.DnsEndPoint.Host;
            var addresses = IPAddress.TryParse(host, out var literal) ? [literal] : await Dns.GetHostAddressesAsync(host, cancellationToken);
            var permitted = addresses.Where(a => permits(context, a)).ToArray();
            if (permitted.Length == 0)
            {
                throw new BlockedAddressException(refusal(host));
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
        };

    /// <summary>Why the request failed, when it failed because the guard refused every address; otherwise null.</summary>
    public static string? Refusal(HttpRequestException failure) => failure.InnerException is BlockedAddressException blocked ? blocked.Message : null;

    /// <summary>Whether <paramref name="address"/> is on the public internet: not loopback, private, link-local, multicast or reserved.</summary>
    public static bool IsPublic(IPAddress address)
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

    private sealed class BlockedAddressException(string message) : Exception(message);
}
