using System.Net;
using HarnessServer.Errors;
using HarnessServer.Webhooks;

namespace HarnessServer.Tests.Approvals;

/// <summary>Where a webhook may connect: public addresses, and private ones only in configured networks.</summary>
public sealed class WebhookUrlTests
{
    private static readonly WebhookUrl Production = WebhookUrl.For(new WebhookOptions(), development: false);
    private static readonly WebhookUrl Development = WebhookUrl.For(new WebhookOptions(), development: true);
    private static readonly WebhookUrl Office = WebhookUrl.For(new WebhookOptions { AllowedNetworks = ["10.20.0.0/16"] }, development: false);

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("::1")]
    [InlineData("10.20.1.2")]
    [InlineData("169.254.169.254")]
    [InlineData("192.168.0.1")]
    [InlineData("::ffff:10.20.1.2")]
    [InlineData("fd00::1")]
    public void Production_refuses_private_loopback_and_link_local_addresses(string address) =>
        Assert.False(Production.Permits(IPAddress.Parse(address)));

    [Fact]
    public void Development_reaches_loopback_and_a_configured_network_reaches_only_itself()
    {
        Assert.True(Development.Permits(IPAddress.Loopback));
        Assert.True(Development.Permits(IPAddress.IPv6Loopback));
        Assert.False(Development.Permits(IPAddress.Parse("10.20.1.2")));
        Assert.True(Office.Permits(IPAddress.Parse("10.20.1.2")));
        Assert.True(Office.Permits(IPAddress.Parse("::ffff:10.20.1.2")));
        Assert.False(Office.Permits(IPAddress.Parse("10.21.0.1")));
        Assert.True(Production.Permits(IPAddress.Parse("93.184.215.14")));
    }

    [Theory]
    [InlineData("http://127.0.0.1:8080/hook", true)]
    [InlineData("http://localhost:8080/hook", false)]
    [InlineData("http://93.184.215.14/hook", false)]
    [InlineData("https://hooks.example.com/hook", true)]
    public void Plain_http_goes_to_a_loopback_literal_only(string url, bool accepted)
    {
        if (accepted)
        {
            Assert.Equal(new Uri(url), Development.Validate(url));
        }
        else
        {
            Assert.Equal("invalid_webhook_url", Assert.Throws<HarnessError>(() => Development.Validate(url)).Code);
        }
    }

    [Fact]
    public void A_network_that_is_not_cidr_is_refused_at_start() =>
        Assert.Throws<InvalidOperationException>(() => WebhookUrl.For(new WebhookOptions { AllowedNetworks = ["10.0.0.0/33"] }, development: false));
}
