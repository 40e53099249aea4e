using System.Text;
using HarnessServer.Tools;

namespace HarnessServer.Tests.Sandbox;

public sealed class OutputTextTests
{
    [Theory]
    [InlineData(new byte[] { 0x68, 0x69 }, "hi", false)]
    [InlineData(new byte[] { 0x00 }, "AA==", true)]
    [InlineData(new byte[] { 0xFF }, "/w==", true)]
    [InlineData(new byte[] { 0xED, 0xA0, 0x80 }, "7aCA", true)]
    [InlineData(new byte[] { 0x01, 0x7F }, "\u0001\u007f", false)]
    public void Text_when_NUL_free_UTF8_else_base64(byte[] bytes, string value, bool base64)
    {
        var output = OutputText.Of(bytes);

        Assert.Equal(value, output.Value);
        Assert.Equal(base64, output.Base64);
    }

    // A cut at the limit that splits "é" keeps the text form of the complete prefix rather than turning it into base64.
    [Fact]
    public void A_cut_inside_a_character_keeps_the_text_before_it()
    {
        var bytes = Encoding.UTF8.GetBytes("abé")[..3];

        var output = OutputText.Of(bytes, " [cut]");

        Assert.False(output.Base64);
        Assert.Equal("ab [cut]", output.Value);
    }
}
