import ArgumentParser
import Foundation
import ThawMetadata

/// `thaw functions list|rm`: the function names kept in the metadata, each pointing at a manifest.
struct Functions: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List or remove function names (thaw push --name points a name at a manifest).",
        subcommands: [List.self, Remove.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "Show every function name and its manifest.")

        @Flag(help: "One JSON object per function instead of a table.")
        var json = false

        @OptionGroup var storeArguments: StoreArguments

        func run() async throws {
            let functions: [FunctionRecord]
            do {
                functions = try await storeArguments.withMetadata(create: false) { try await $0?.functions() ?? [] }
            } catch {
                throw ValidationFailure(CommandErrors.describe(error))
            }
            let time = ISO8601DateFormatter()
            if json {
                for f in functions {
                    let object: [String: Any] = ["name": f.name.value, "manifest": f.manifestID, "root": f.root.value,
                                                 "tenant": f.tenant.name, "updated": time.string(from: f.updatedAt)]
                    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                    print(String(decoding: data, as: UTF8.self))
                }
                return
            }
            guard !functions.isEmpty else {
                print("no function names in \(try storeArguments.metadataLocation)")
                return
            }
            let width = max(4, functions.map(\.name.value.count).max() ?? 0)
            print("NAME".padding(toLength: width, withPad: " ", startingAt: 0) + "  MANIFEST          ROOT    TENANT    UPDATED")
            for f in functions {
                print(f.name.value.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + f.manifestID.prefix(16)
                      + "  " + f.root.value.padding(toLength: 6, withPad: " ", startingAt: 0)
                      + "  " + f.tenant.name.padding(toLength: 8, withPad: " ", startingAt: 0) + "  " + time.string(from: f.updatedAt))
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm",
            abstract: "Remove a function name. Its manifest stays until garbage collection finds nothing else uses it.")

        @Argument(help: "The function name.")
        var name: String

        @OptionGroup var storeArguments: StoreArguments

        func run() async throws {
            do {
                let functionName = try FunctionName(name)
                let removed = try await storeArguments.withMetadata(create: false) { try await $0?.removeFunction(named: functionName) ?? false }
                guard removed else { throw ValidationFailure("no function named \(functionName) in \(try storeArguments.metadataLocation)") }
                print("removed function \(functionName)")
            } catch {
                throw ValidationFailure(CommandErrors.describe(error))
            }
        }
    }
}
