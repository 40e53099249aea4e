using System.Buffers;
using System.Data;
using System.Text.Json;
using Npgsql;

namespace HarnessServer.Audit;

/// <summary>
/// Writes a tenant's chain as JSON Lines, one event per line, reading it in seq batches so memory stays constant:
/// <c>{seq, tenant, at, actor: {id, name}, sessionId, type, tool, decision, payloadHash, prevHash, hash, payload}</c>.
/// <c>payload</c> is not hashed (its hash is); a redacted payload is left out of the line.
/// </summary>
internal sealed class AuditExport(NpgsqlDataSource database)
{
    private const int BatchSize = 1_000;

    /// <summary>Writes the events with <paramref name="fromSeq"/> ≤ seq ≤ <paramref name="toSeq"/>.</summary>
    public Task WriteAsync(string tenantId, long fromSeq, long toSeq, Stream output, CancellationToken ct) =>
        WriteAsync(tenantId, fromSeq, toSeq, AuditEventFilter.None, output, ct);

    /// <summary>
    /// Writes the events with <paramref name="fromSeq"/> ≤ seq ≤ <paramref name="toSeq"/> that match
    /// <paramref name="filter"/> (the same lines as the whole export; a filtered export leaves gaps in the chain, so
    /// each line is checked on its own rather than as a chain).
    /// </summary>
    public async Task WriteAsync(string tenantId, long fromSeq, long toSeq, AuditEventFilter filter, Stream output, CancellationToken ct)
    {
        await using var connection = await database.OpenConnectionAsync(ct);
        // One snapshot for the whole export, so a long export never mixes two states of the chain.
        await using var transaction = await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, ct);
        await using var command = new NpgsqlCommand { Connection = connection, Transaction = transaction };
        var after = new NpgsqlParameter<long>();
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = tenantId });
        command.Parameters.Add(after);
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = toSeq });
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = BatchSize });
        command.CommandText = $"""
            SELECT seq, at, actor_id, actor_name, session_id, type, tool, decision, payload, payload_hash, prev_hash, hash
            FROM audit_events WHERE tenant_id = $1 AND seq > $2 AND seq <= $3{Conditions(filter, command.Parameters)} ORDER BY seq LIMIT $4
            """;

        var buffer = new ArrayBufferWriter<byte>(64 * 1024);
        await using var json = new Utf8JsonWriter(buffer);
        var last = Math.Max(0, fromSeq - 1);
        while (true)
        {
            after.TypedValue = last;
            var rows = 0;
            await using (var reader = await command.ExecuteReaderAsync(CommandBehavior.SequentialAccess, ct))
            {
                while (await reader.ReadAsync(ct))
                {
                    rows++;
                    last = reader.GetInt64(0);
                    WriteLine(json, tenantId, last, reader);
                    json.Flush();
                    json.Reset();
                    buffer.Write("\n"u8);
                    if (buffer.WrittenCount >= 60 * 1024)
                    {
                        await output.WriteAsync(buffer.WrittenMemory, ct);
                        buffer.ResetWrittenCount();
                    }
                }
            }

            await output.WriteAsync(buffer.WrittenMemory, ct);
            buffer.ResetWrittenCount();
            await output.FlushAsync(ct);
            if (rows < BatchSize)
            {
                return;
            }
        }
    }

    // Only the filters given become conditions, each on a parameter, so the planner sees the same shape as the
    // console's page query and can use the (tenant, column, seq) indexes.
    private static string Conditions(AuditEventFilter filter, NpgsqlParameterCollection parameters)
    {
        var sql = new System.Text.StringBuilder();
        void Add(string condition, NpgsqlParameter parameter)
        {
            parameters.Add(parameter);
            sql.Append(" AND ").Append(condition.Replace("@", "$" + parameters.Count, StringComparison.Ordinal));
        }

        if (filter.User is { } user)
        {
            Add("actor_id = @", new NpgsqlParameter<string> { TypedValue = user });
        }

        if (filter.Tool is { } tool)
        {
            Add("tool = @", new NpgsqlParameter<string> { TypedValue = tool });
        }

        if (filter.Type is { } type)
        {
            Add("type = @", new NpgsqlParameter<string> { TypedValue = type });
        }

        if (filter.Outcome is { } outcome)
        {
            Add("(decision ->> 'effect' = @ OR payload ->> 'status' = @)", new NpgsqlParameter<string> { TypedValue = outcome });
        }

        if (filter.From is { } from)
        {
            Add("at >= @", new NpgsqlParameter<DateTimeOffset> { TypedValue = from.ToUniversalTime() });
        }

        if (filter.To is { } to)
        {
            Add("at <= @", new NpgsqlParameter<DateTimeOffset> { TypedValue = to.ToUniversalTime() });
        }

        return sql.ToString();
    }

    private static void WriteLine(Utf8JsonWriter json, string tenantId, long seq, NpgsqlDataReader reader)
    {
        json.WriteStartObject();
        json.WriteNumber("seq", seq);
        json.WriteString("tenant", tenantId);
        json.WriteString("at", AuditHash.FormatAt(new DateTimeOffset(reader.GetFieldValue<DateTime>(1).Ticks, TimeSpan.Zero)));
        json.WriteStartObject("actor");
        json.WriteString("id", reader.GetString(2));
        json.WriteString("name", reader.GetString(3));
        json.WriteEndObject();
        WriteNullable(json, "sessionId", reader.IsDBNull(4) ? null : reader.GetGuid(4).ToString("D"));
        json.WriteString("type", reader.GetString(5));
        WriteNullable(json, "tool", reader.IsDBNull(6) ? null : reader.GetString(6));
        json.WritePropertyName("decision");
        if (reader.IsDBNull(7))
        {
            json.WriteNullValue();
        }
        else
        {
            json.WriteRawValue(reader.GetString(7), skipInputValidation: true);
        }

        var payload = reader.IsDBNull(8) ? null : reader.GetString(8);
        json.WriteString("payloadHash", reader.GetString(9));
        json.WriteString("prevHash", reader.GetString(10));
        json.WriteString("hash", reader.GetString(11));
        if (payload is not null)
        {
            json.WritePropertyName("payload");
            json.WriteRawValue(payload, skipInputValidation: true);
        }

        json.WriteEndObject();
    }

    private static void WriteNullable(Utf8JsonWriter json, string name, string? value)
    {
        if (value is null)
        {
            json.WriteNull(name);
        }
        else
        {
            json.WriteString(name, value);
        }
    }
}
