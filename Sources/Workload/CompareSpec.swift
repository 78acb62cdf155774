import Foundation
import Yams

/// A comparison: one base workload and the fields to vary.
///
///     name: protocols
///     workload: quickstart.yaml          # relative to this file
///     set: {duration_s: 10}              # optional: overrides for every variant
///     vary:                              # the cartesian product of these lists
///       group.protocol: [multi-leader, single-leader]
///       group.batch_commands_max: [1, 64, 512]
///     variants:                          # optional: extra variants, field by field
///       - {group.protocol: unreplicated}
public struct CompareSpec: Sendable {
    public struct Variant: Sendable {
        /// The varied fields and their values, in the order of `CompareSpec.fields`.
        public var values: [String]
        public var workload: WorkloadSpec
        public var label: String
    }

    public var name: String
    public var fields: [String]
    public var variants: [Variant]

    public static func load(path: String) throws(SpecErrors) -> CompareSpec {
        let text = try SpecFile.read(path)
        let root = try YAMLFields.parse(text, file: path)
        let name = root.string("name", default: URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent)
        let workloadPath = root.string("workload", default: "")
        if !root.has("workload") { root.fail(nil, field: "workload", "is required: the base workload file") }
        let setNode = root.value("set")
        var sets: [(String, Node)] = []
        if let mapping = setNode?.mapping {
            sets = mapping.map { ($0.key.string ?? "", $0.value) }
        } else if let setNode {
            root.fail(setNode, field: "set", "expected a mapping of field: value")
        }
        var axes: [(field: String, values: [Node])] = []
        if let varyNode = root.value("vary") {
            if let mapping = varyNode.mapping {
                for (key, value) in mapping {
                    let field = key.string ?? ""
                    guard let list = value.sequence, !list.isEmpty else {
                        root.fail(value, field: "vary.\(field)", "expected a non-empty list of values")
                        continue
                    }
                    axes.append((field, Array(list)))
                }
            } else {
                root.fail(varyNode, field: "vary", "expected a mapping of field: [values]")
            }
        }
        var explicit: [[(String, Node)]] = []
        for (variantPath, node) in root.sequence("variants") {
            guard let mapping = node.mapping else {
                root.fail(node, field: variantPath, "expected a mapping of field: value")
                continue
            }
            explicit.append(mapping.map { ($0.key.string ?? "", $0.value) })
        }
        root.rejectUnknown(expected: ["name", "workload", "set", "vary", "variants"])
        if axes.isEmpty, explicit.isEmpty { root.fail(nil, field: "vary", "give at least one field to vary, or variants") }
        guard root.errors.isEmpty else { throw SpecErrors(errors: root.errors) }

        let basePath = workloadPath.hasPrefix("/") ? workloadPath
            : URL(fileURLWithPath: path).absoluteURL.deletingLastPathComponent().appendingPathComponent(workloadPath).path
        let baseText: String
        do {
            baseText = try SpecFile.read(basePath)
        } catch {
            throw SpecErrors(errors: [SpecError(file: path, line: 1, column: 1, field: "workload", problem: "cannot read \(basePath): \(error.errors[0].problem)")])
        }
        // The base must be valid on its own, so its errors name its own lines.
        _ = try WorkloadSpec.parse(baseText, file: basePath)

        var fields = axes.map(\.field)
        for variant in explicit { for (field, _) in variant where !fields.contains(field) { fields.append(field) } }
        var combinations: [[(String, Node)]] = [[]]
        for axis in axes {
            combinations = combinations.flatMap { prefix in axis.values.map { prefix + [(axis.field, $0)] } }
        }
        if axes.isEmpty { combinations = [] }
        combinations += explicit

        var variants: [Variant] = []
        var errors: [SpecError] = []
        for (index, assignments) in combinations.enumerated() {
            guard var tree = (try? Yams.compose(yaml: baseText)) ?? nil else { continue }
            for (field, value) in sets + assignments {
                tree = Self.setting(value, at: field.split(separator: ".").map(String.init), in: tree)
            }
            let label = assignments.map { "\($0.0)=\($0.1.scalar?.string ?? "…")" }.joined(separator: " ")
            do {
                let variantText = try Yams.serialize(node: tree)
                var workload = try WorkloadSpec.parse(variantText, file: "\(path) (variant \(index + 1): \(label))")
                // A composition named by the comparison is relative to the comparison's folder;
                // one named by the base workload, to the base's folder.
                if let composition = workload.composition, !composition.hasPrefix("/") {
                    let assigned = (sets + assignments).contains { $0.0 == "composition" }
                    let folder = URL(fileURLWithPath: assigned ? path : basePath).absoluteURL.deletingLastPathComponent()
                    workload.composition = folder.appendingPathComponent(composition).standardized.path
                }
                let values = fields.map { field in assignments.first { $0.0 == field }?.1.scalar?.string ?? "" }
                variants.append(Variant(values: values, workload: workload, label: label))
            } catch let error as SpecErrors {
                errors += error.errors
            } catch {
                errors.append(SpecError(file: path, line: 1, column: 1, field: label, problem: "\(error)"))
            }
        }
        guard errors.isEmpty else { throw SpecErrors(errors: errors) }
        return CompareSpec(name: name, fields: fields, variants: variants)
    }

    /// `tree` with `value` at the dotted `path`, creating mappings on the way.
    static func setting(_ value: Node, at path: [String], in tree: Node) -> Node {
        guard let head = path.first else { return value }
        var pairs = (tree.mapping ?? [:]).map { ($0.key, $0.value) }
        if let index = pairs.firstIndex(where: { $0.0.string == head }) {
            pairs[index].1 = setting(value, at: Array(path.dropFirst()), in: pairs[index].1)
        } else {
            pairs.append((Node(head), setting(value, at: Array(path.dropFirst()), in: Node([(Node, Node)]()))))
        }
        return Node(pairs)
    }

    /// `compare.csv`: a row per variant and operation, the varied fields as columns, then the
    /// summary columns, then `client_location`: empty on the rows of all clients, followed (when
    /// clients have locations) by the same rows for the clients of each location.
    public static func csv(fields: [String], rows: [(variant: Variant, summary: RunSummary)]) -> String {
        csv(fields: fields, results: rows.map { ($0.variant, $0.summary.rows, $0.summary.storage, $0.summary.locationRows) })
    }

    /// The same from summary rows (a variant run by another process, such as csmr-etcd, hands
    /// back its `summary.csv`).
    public static func csv(fields: [String],
                           results: [(variant: Variant, rows: [SummaryRow], storage: StorageSummary?, locationRows: [(location: String, rows: [SummaryRow])])])
        -> String {
        // Storage columns are per variant (group commit serves every operation), repeated on each
        // of its rows; empty where nothing was written to files.
        var lines = [(["variant"] + fields).joined(separator: ",") + "," + SummaryRow.header + "," + StorageSummary.header + ",client_location"]
        for (index, result) in results.enumerated() {
            let achieved = result.rows.last?.achievedOperationsPerSecond ?? 0
            let storage = result.storage?.csv(completedPerSecond: achieved)
                ?? String(repeating: ",", count: StorageSummary.header.split(separator: ",").count - 1)
            let prefix = (["\(index + 1)"] + result.variant.values.map(Self.csvField)).joined(separator: ",")
            let groups = [("", result.rows)] + result.locationRows.map { ($0.location, $0.rows) }
            for (location, summaryRows) in groups {
                for summaryRow in summaryRows {
                    lines.append(prefix + "," + summaryRow.csv + "," + storage + "," + Self.csvField(location))
                }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    public static func csvField(_ text: String) -> String {
        text.contains(",") || text.contains("\"") ? "\"\(text.replacingOccurrences(of: "\"", with: "\"\""))\"" : text
    }
}
