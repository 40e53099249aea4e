using System.Text;
using HarnessServer.Tools;

namespace HarnessServer.Sandbox;

/// <summary>One stream of a sandboxed command: the first <c>MaxOutputBytes</c> are kept, the rest counted and dropped.</summary>
internal sealed class OutputCapture(int limit)
{
    private static readonly Encoding Utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false);

    private readonly MemoryStream _kept = new();
    private long _total;

    public void Append(ReadOnlySpan<byte> bytes)
    {
        var room = (int)Math.Max(0, Math.Min(bytes.Length, limit - _kept.Length));
        _kept.Write(bytes[..room]);
        _total += bytes.Length;
    }

    /// <summary>The text (with the truncation marker when more came than the limit), whether it was cut, and the stored form.</summary>
    public (string Text, bool Truncated, OutputText Lossless) Finish()
    {
        var bytes = _kept.GetBuffer().AsSpan(0, (int)_kept.Length);
        var text = Utf8.GetString(bytes);
        var marker = $"\n[output truncated at {limit} bytes]";
        return _total > limit ? (text + marker, true, OutputText.Of(bytes, marker)) : (text, false, OutputText.Of(bytes));
    }
}
