namespace HarnessServer.Data;

/// <summary>A row that belongs to one tenant; <see cref="HarnessDbContext"/> filters and stamps it.</summary>
internal interface ITenantOwned
{
    string TenantId { get; set; }
}
