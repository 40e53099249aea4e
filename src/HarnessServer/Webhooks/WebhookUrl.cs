using System.Net;
using HarnessServer.Errors;
using HarnessServer.Http;

namespace HarnessServer.Webhooks;

/// <summary>
/// Where a webhook may point. An absolute <c>https</c> URL without credentials or fragment; plain <c>http</c> only to
/// a loopback address, and only where loopback is allowed. Every address a host resolves to must be public or in
/// <see cref="WebhookOptions.AllowedNetworks"/> (loopback in Development): checked when the URL is set for an address
/// literal, and at every connection for names (a name that later resolves to a private address is refused then).
/// </summary>
internal sealed class WebhookUrl
{
    public const int MaxLength = 2000;

    private readonly IPNetwork[] _allowed;

    public WebhookUrl(IEnumerable<IPNetwork> allowed) => _allowed = [.. allowed];

    /// <summary>The networks of <paramref name="options"/>, and loopback when <paramref name="development"/>.</summary>
    public static WebhookUrl For(WebhookOptions options, bool development)
    {
        var networks = options.AllowedNetworks.Select(Parse).ToList();
        if (development)
        {
            networks.Add(IPNetwork.Parse("127.0.0.0/8"));
            networks.Add(IPNetwork.Parse("::1/128"));
        }

        return new WebhookUrl(networks);
    }

    public static IPNetwork Parse(string cidr) => IPNetwork.TryParse(cidr, out var network)
        ? network
        : throw new InvalidOperationException($"Harness:Webhooks:AllowedNetworks: '{cidr}' is not a network in CIDR notation (such as 10.0.0.0/8).");

    /// <summary>Whether a webhook may connect to <paramref name="address"/>.</summary>
    public bool Permits(IPAddress address)
    {
        var plain = address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;
        return AddressGuard.IsPublic(plain) || _allowed.Any(n => n.Contains(plain));
    }

    /// <summary>The URL an admin asked for, checked; a refusal says what is wrong.</summary>
    public Uri Validate(string? url)
    {
        if (string.IsNullOrWhiteSpace(url) || url.Length > MaxLength || !Uri.TryCreate(url, UriKind.Absolute, out var uri))
        {
            throw Invalid($"'{url}' is not an absolute URL of at most {MaxLength} characters.");
        }

        if (uri.Scheme is not ("https" or "http"))
        {
            throw Invalid($"A webhook URL is https (http only to a loopback address); '{uri.Scheme}' is neither.");
        }

        if (uri.UserInfo.Length > 0 || uri.Fragment.Length > 0)
        {
            throw Invalid("A webhook URL carries no user name, password or fragment; the signature authenticates the server.");
        }

        var literal = uri.HostNameType is UriHostNameType.IPv4 or UriHostNameType.IPv6 ? IPAddress.Parse(uri.Host.Trim('[', ']')) : null;
        if (uri.Scheme == "http" && (literal is null || !IPAddress.IsLoopback(literal) || !Permits(literal)))
        {
            throw Invalid(literal is not null && IPAddress.IsLoopback(literal)
                ? "Plain http to loopback is allowed only where loopback is (Development, or Harness:Webhooks:AllowedNetworks)."
                : "A webhook URL is https; plain http only to a loopback address such as 127.0.0.1.");
        }

        if (literal is not null && !Permits(literal))
        {
            throw Invalid($"{literal} is a private, loopback or link-local address; a webhook reaches it only when Harness:Webhooks:AllowedNetworks names its network.");
        }

        return uri;
    }

    private static HarnessError Invalid(string detail) => new(ErrorKind.Invalid, "invalid_webhook_url", detail);
}
