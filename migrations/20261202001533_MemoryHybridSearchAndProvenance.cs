using System;
using Microsoft.EntityFrameworkCore.Migrations;
using NpgsqlTypes;

#nullable disable

namespace HarnessServer.Migrations
{
    /// <inheritdoc />
    public partial class MemoryHybridSearchAndProvenance : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<NpgsqlTsVector>(
                name: "search_vector",
                table: "memory_items",
                type: "tsvector",
                nullable: false)
                .Annotation("Npgsql:TsVectorConfig", "english")
                .Annotation("Npgsql:TsVectorProperties", new[] { "content" });

            migrationBuilder.AddColumn<Guid>(
                name: "session_id",
                table: "memory_items",
                type: "uuid",
                nullable: true);

            migrationBuilder.AddColumn<Guid>(
                name: "turn_id",
                table: "memory_items",
                type: "uuid",
                nullable: true);

            migrationBuilder.CreateIndex(
                name: "ix_memory_items_search_vector",
                table: "memory_items",
                column: "search_vector")
                .Annotation("Npgsql:IndexMethod", "gin");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_memory_items_search_vector",
                table: "memory_items");

            migrationBuilder.DropColumn(
                name: "search_vector",
                table: "memory_items");

            migrationBuilder.DropColumn(
                name: "session_id",
                table: "memory_items");

            migrationBuilder.DropColumn(
                name: "turn_id",
                table: "memory_items");
        }
    }
}
