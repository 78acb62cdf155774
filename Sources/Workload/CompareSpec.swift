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
///     repeat: 5                          # optional: runs of each variant, interleaved
///     median_by: achieved_ops_s          # optional: the column that picks the median run
///
/// With `repeat`, the variants run in rounds (every variant once, then every variant again), so
/// a machine that drifts over minutes moves all variants alike instead of whichever ran last;
/// `compare.csv` reports each variant's median run and `repetitions.csv` every run.
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
    /// Runs of each variant (`repeat`), one round of all variants after another.
    public var repetitions = 1
    /// The column of the `all` row whose median picks a variant's reported run (`median_by`).
    public var medianBy = MedianColumn.achievedOperationsPerSecond

    /// What a variant's median run is the median of: throughput for peak comparisons, a latency
    /// percentile for comparisons at one offered rate (where every run achieves about the same).
    public enum MedianColumn: String, CaseIterable, Sendable {
        case achievedOperationsPerSecond = "achieved_ops_s"
        case meanMicroseconds = "mean_us"
        case p50 = "p50_us"
        case p90 = "p90_us"
        case p99 = "p99_us"
        case p999 = "p999_us"

        /// Throughput is better high; every latency column is better low.
        public var higherIsBetter: Bool { self == .achievedOperationsPerSecond }

        public func value(_ row: SummaryRow) -> Double {
            switch self {
            case .achievedOperationsPerSecond: row.achievedOperationsPerSecond
            case .meanMicroseconds: row.meanMicroseconds
            case .p50: Double(row.p50)
            case .p90: Double(row.p90)
            case .p99: Double(row.p99)
            case .p999: Double(row.p999)
            }
        }
    }

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
        let repetitions = root.int("repeat", default: 1, range: 1...25, unit: "runs of each variant")
        let medianBy = root.choice("median_by", default: MedianColumn.achievedOperationsPerSecond)
        root.rejectUnknown(expected: ["name", "workload", "set", "vary", "variants", "repeat", "median_by"])
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
        if repetitions > 1, let swept = variants.firstIndex(where: { $0.workload.sweep != nil }) {
            // A sweep already runs a curve of steps; its knee is not a run to take a median of.
            let mark = root.value("repeat")?.mark
            errors.append(SpecError(file: path, line: mark?.line ?? 1, column: mark?.column ?? 1, field: "repeat",
                                    problem: "variant \(swept + 1) is a sweep; repeat applies to single runs (use repeat: 1 or drop the sweep)"))
        }
        guard errors.isEmpty else { throw SpecErrors(errors: errors) }
        return CompareSpec(name: name, fields: fields, variants: variants, repetitions: repetitions, medianBy: medianBy)
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

    /// One run of one variant: what `compare.csv` and `repetitions.csv` are made of.
    public struct VariantRun: Sendable {
        /// The variant's number in the spec, from 1.
        public var variant: Int
        /// Which run of the variant this was, from 1.
        public var repetition: Int
        /// The varied fields' values, in the order of `CompareSpec.fields`.
        public var values: [String]
        public var rows: [SummaryRow]
        public var storage: StorageSummary?
        public var locationRows: [(location: String, rows: [SummaryRow])]

        public init(variant: Int, repetition: Int, values: [String], rows: [SummaryRow], storage: StorageSummary? = nil,
                    locationRows: [(location: String, rows: [SummaryRow])] = []) {
            self.variant = variant
            self.repetition = repetition
            self.values = values
            self.rows = rows
            self.storage = storage
            self.locationRows = locationRows
        }

        /// All operations together: the summary's last row (an empty one if the run had none).
        public var all: SummaryRow { rows.last ?? SummaryRow(csv: "all,0,0,0,0,0,0,0,0,0,0,0,0")! }

        /// Throughput of all operations together.
        public var achievedOperationsPerSecond: Double { all.achievedOperationsPerSecond }
    }

    /// Each variant's median run by `column` of all operations (the summary's last row), in
    /// variant order: a whole run, so its other columns are the ones measured with it. With an
    /// even number of runs, the worse of the two middle ones (lower throughput, higher latency;
    /// an odd `repeat` has a true median).
    public static func medianRuns(_ runs: [VariantRun], by column: MedianColumn = .achievedOperationsPerSecond) -> [VariantRun] {
        Dictionary(grouping: runs, by: \.variant).sorted { $0.key < $1.key }.map { _, runs in
            let sorted = runs.sorted {
                (column.value($0.all), $0.repetition) < (column.value($1.all), $1.repetition)
            }
            return sorted[column.higherIsBetter ? (sorted.count - 1) / 2 : sorted.count / 2]
        }
    }

    /// `compare.csv` (and `repetitions.csv`): a row per run and operation, the varied fields as
    /// columns, then the summary columns, then `client_location`: empty on the rows of all
    /// clients, followed (when clients have locations) by the same rows for the clients of each
    /// location; last, which run of the variant the row comes from.
    public static func csv(fields: [String], runs: [VariantRun]) -> String {
        // Storage columns are per run (group commit serves every operation), repeated on each
        // of its rows; empty where nothing was written to files.
        var lines = [(["variant"] + fields).joined(separator: ",") + "," + SummaryRow.header + "," + StorageSummary.header
            + ",client_location,repetition"]
        for run in runs {
            let storage = run.storage?.csv(completedPerSecond: run.achievedOperationsPerSecond)
                ?? String(repeating: ",", count: StorageSummary.header.split(separator: ",").count - 1)
            let prefix = (["\(run.variant)"] + run.values.map(Self.csvField)).joined(separator: ",")
            let groups = [("", run.rows)] + run.locationRows.map { ($0.location, $0.rows) }
            for (location, summaryRows) in groups {
                for summaryRow in summaryRows {
                    lines.append(prefix + "," + summaryRow.csv + "," + storage + "," + Self.csvField(location) + ",\(run.repetition)")
                }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The same for one run of each variant, numbered in order (a test's or a caller's summaries).
    public static func csv(fields: [String], rows: [(variant: Variant, summary: RunSummary)]) -> String {
        csv(fields: fields, runs: rows.enumerated().map { index, row in
            VariantRun(variant: index + 1, repetition: 1, values: row.variant.values, rows: row.summary.rows, storage: row.summary.storage,
                       locationRows: row.summary.locationRows)
        })
    }

    public static func csvField(_ text: String) -> String {
        text.contains(",") || text.contains("\"") ? "\"\(text.replacingOccurrences(of: "\"", with: "\"\""))\"" : text
    }
}
