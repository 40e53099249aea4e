using System.Text.Json;
using System.Text.Json.Serialization;

namespace HarnessServer.Http;

/// <summary>
/// Request bodies' strings are refused (400, with their JSON path) when no text column could store them: a NUL
/// character. (An unpaired surrogate escape is already refused by the reader.) Without this, such a string reached a
/// write and failed it, which answered 503 as if the database were down.
/// </summary>
internal sealed class StorableStringConverter : JsonConverter<string>
{
    public override bool HandleNull => false;

    public override string Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        Checked(reader.GetString()!);

    public override void Write(Utf8JsonWriter writer, string value, JsonSerializerOptions options) => writer.WriteStringValue(value);

    public override string ReadAsPropertyName(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        Checked(reader.GetString()!);

    public override void WriteAsPropertyName(Utf8JsonWriter writer, string value, JsonSerializerOptions options) => writer.WritePropertyName(value);

    private static string Checked(string value) =>
        StorableText.Problem(value) is { } problem ? throw new JsonException($"The string cannot be stored: {problem}.") : value;
}
