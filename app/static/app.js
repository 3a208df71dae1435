/* chiso dashboard: plain JavaScript, no build step, no network beyond this service's API.
 * Views: #/ (the nation), #/u/CODE (a province or a commune). Every ~10 s the current view is
 * polled again with If-None-Match; unchanged answers come back as 304 and cost nothing. */
"use strict";
(() => {
  const POLL_MS = 10000;
  const SLOW_MS = 60000; // the weekly trend: asked again at most once a minute
  const SIDE_MS = 30000; // sectors and data-quality lists
  const KEY_STORE = "chiso.readKey";
  const LANG_STORE = "chiso.lang";
  const WINDOWS = [["7d", "week"], ["30d", "month"], ["90d", "quarter"]];
  const FEW_SETTLED = 10; // below this many settled dossiers a rate is marked as resting on few dossiers
  const MIN_COUNT = 10; // rankings rank only units whose sort KPI rests on at least this many dossiers (min_count)
  const RISK = ["due_24h", "due_48h", "due_72h"]; // due within 24, 48, 72 hours (SPEC section 4)
  const RISK_TOP = 10; // units listed in the at-risk panel of the nation or a province

  // kind: how to show it; better: +1 higher is better, -1 lower is better, 0 a volume (not judged);
  // point: a figure at one moment (the end of the period, i.e. now), compared with 7, 30, 90 days ago
  const FIGURES = [
    { kpi: "on_time_rate", kind: "rate", better: 1 },
    { kpi: "settlement_score", kind: "score", better: 1 },
    { kpi: "received", kind: "count", better: 0 },
    { kpi: "resolved", kind: "count", better: 0 },
    { kpi: "pending", kind: "count", better: -1, point: true },
    { kpi: "overdue", kind: "count", better: -1, point: true },
    { kpi: "online_rate", kind: "rate", better: 1 },
    { kpi: "processing_hours_p50", kind: "hours", better: -1 },
  ];
  const KINDS = Object.fromEntries(FIGURES.map((f) => [f.kpi, f.kind]));
  Object.assign(KINDS, { settlement_rate_766: "rate", overdue_766: "count", withdrawn: "count", silent_units: "count" });
  RISK.forEach((k) => (KINDS[k] = "count"));
  const BETTER = Object.fromEntries(FIGURES.map((f) => [f.kpi, f.better]));
  Object.assign(BETTER, { settlement_rate_766: 1, due_24h: -1, due_48h: -1, due_72h: -1, silent_units: -1 });
  const CHART_KPIS = ["on_time_rate", "settlement_rate_766", "online_rate", "received", "overdue"];

  const T = {
    vi: {
      title: "Đánh giá chính quyền địa phương hai cấp",
      subtitle: "Tiến độ giải quyết thủ tục hành chính, theo thời gian thực",
      nation: "Toàn quốc",
      asOf: "Số liệu tính đến",
      polling: "Tự động cập nhật mỗi 10 giây",
      offline: "Mất kết nối tới máy chủ, đang thử lại…",
      loading: "Đang tải…",
      figures: "Số liệu chính",
      figuresNote:
        "Mỗi dòng so sánh với kỳ liền trước có cùng độ dài, tính đến cùng thời điểm: Tuần = 7 ngày qua so với 7 ngày trước đó đến giờ này 7 ngày trước; Tháng = 30 ngày; Quý = 90 ngày. Màu xanh lá: tốt hơn; màu đỏ: kém hơn; màu xanh dương: khối lượng hồ sơ (không đánh giá tốt hay kém).",
      week: "Tuần",
      month: "Tháng",
      quarter: "Quý",
      w7d: "7 ngày",
      w30d: "30 ngày",
      w90d: "90 ngày",
      w7dLong: "7 ngày qua so với 7 ngày trước đó, tính đến cùng giờ",
      w30dLong: "30 ngày qua so với 30 ngày trước đó, tính đến cùng giờ",
      w90dLong: "90 ngày qua so với 90 ngày trước đó, tính đến cùng giờ",
      colPeriod: "Kỳ",
      colAgo: "So với lúc",
      colThen: "Khi đó",
      rightNow: "hiện nay",
      ago7d: "7 ngày trước",
      ago30d: "30 ngày trước",
      ago90d: "90 ngày trước",
      colValue: "Hiện tại",
      colChange: "So với kỳ trước",
      better: "tốt hơn kỳ trước",
      worse: "kém hơn kỳ trước",
      same: "không đổi",
      neutral: "thay đổi khối lượng",
      noPrev: "chưa có số liệu để so sánh",
      previousWas: "kỳ trước",
      upTo: "tính đến",
      kpi: {
        on_time_rate: "Tỷ lệ giải quyết đúng hạn",
        settlement_score: "Điểm tiến độ giải quyết (Chỉ số 766)",
        settlement_rate_766: "Tỷ lệ đúng hạn theo Chỉ số 766",
        received: "Hồ sơ tiếp nhận",
        resolved: "Hồ sơ đã giải quyết",
        pending: "Hồ sơ đang giải quyết",
        overdue: "Hồ sơ đang quá hạn",
        online_rate: "Tỷ lệ nộp trực tuyến",
        processing_hours_p50: "Thời gian giải quyết (trung vị)",
      },
      hint: {
        on_time_rate: "Hồ sơ giải quyết sớm hạn và đúng hạn trên tổng số hồ sơ đã giải quyết có hạn",
        settlement_score: "Thang 20 điểm: 20 × tỷ lệ hồ sơ tiếp nhận trong kỳ được giải quyết đúng hạn (Quyết định 766/QĐ-TTg)",
        received: "Số hồ sơ tiếp nhận trong kỳ",
        resolved: "Số hồ sơ đã giải quyết trong kỳ",
        pending: "Hồ sơ đã tiếp nhận, chưa giải quyết xong",
        overdue: "Hồ sơ chưa giải quyết xong và đã quá hạn giải quyết",
        online_rate: "Hồ sơ nộp trực tuyến trên tổng số hồ sơ tiếp nhận",
        processing_hours_p50: "Một nửa số hồ sơ được giải quyết trong thời gian này, tính từ lúc tiếp nhận",
      },
      scoreOf: "/ 20 điểm",
      hoursUnit: "giờ",
      ppUnit: "điểm %",
      ranking: { province: "Xếp hạng tỉnh, thành phố", commune: "Xếp hạng xã, phường, đặc khu" },
      rankingIn: "trong",
      sortBy: "Xếp theo",
      sortOnTime: "Tỷ lệ đúng hạn",
      sortScore: "Điểm 766",
      filter: "Tìm theo tên…",
      rankNote: (kpi, w) =>
        `Xếp theo ${kpi}, ${w} qua, cao nhất trước; đơn vị chưa có số liệu xếp cuối. Cột “Thay đổi”: ${kpi} so với ${w} trước đó. Bấm vào tên đơn vị để xem chi tiết.`,
      colRank: "Hạng",
      colUnit: "Đơn vị",
      colOnTime: "Đúng hạn",
      colScore: "Điểm 766",
      colReceived: "Tiếp nhận",
      colOverdue: "Đang quá hạn",
      colDelta: "Thay đổi",
      noData: "chưa có số liệu",
      few: "ít hồ sơ",
      fewTitle: (n) => `Chỉ ${n} hồ sơ đã giải quyết có hạn trong kỳ: tỷ lệ chưa đủ tin cậy để so sánh`,
      noValue: "Không tính được: chưa có hồ sơ nào trong kỳ này",
      noRows: "Không có đơn vị nào khớp.",
      trend: "Xu hướng theo tuần, 12 tháng qua",
      currentWeek: "tuần hiện tại, chưa hết tuần",
      weekOf: "Tuần từ",
      sectors: "Theo lĩnh vực, 30 ngày qua",
      colSector: "Lĩnh vực",
      colResolved: "Đã giải quyết",
      colOnline: "Trực tuyến",
      sector: {
        land: "Đất đai",
        civil_status: "Hộ tịch",
        business: "Đăng ký kinh doanh",
        certification: "Chứng thực",
        social_welfare: "Bảo trợ xã hội",
        labour: "Lao động, việc làm",
        construction: "Xây dựng",
        null: "Không ghi lĩnh vực",
      },
      risk: "Hồ sơ sắp quá hạn",
      riskNote:
        "Hồ sơ đang giải quyết có hạn giải quyết trong 24, 48, 72 giờ tới: sẽ quá hạn nếu không được giải quyết kịp. So sánh với 7 ngày trước.",
      due: { due_24h: "Đến hạn trong 24 giờ", due_48h: "Đến hạn trong 48 giờ", due_72h: "Đến hạn trong 72 giờ" },
      riskTop: "Đơn vị có nhiều hồ sơ đến hạn trong 48 giờ tới nhất",
      riskNone: "Không có hồ sơ nào đến hạn trong 48 giờ tới.",
      riskList: (n) => `Hồ sơ đến hạn trong 72 giờ tới hoặc đã quá hạn (${n})`,
      riskListNone: "Không có hồ sơ nào đến hạn trong 72 giờ tới hay đã quá hạn.",
      riskMore: (shown, n) => `Hiển thị ${shown}/${n} hồ sơ, hạn gần nhất trước.`,
      colDossier: "Hồ sơ",
      colChannel: "Kênh nộp",
      colReceivedAt: "Tiếp nhận",
      colDueAt: "Hạn giải quyết",
      colLeft: "Thời gian còn lại",
      col24: "≤ 24 giờ",
      col48: "≤ 48 giờ",
      col72: "≤ 72 giờ",
      left: (h) => `còn ${h}`,
      late: (h) => `quá hạn ${h}`,
      channel: { online: "Trực tuyến", in_person: "Trực tiếp", postal: "Bưu chính" },
      duration: (d, h) => (d > 0 ? `${d} ngày ${h} giờ` : `${h} giờ`),
      silentTitle: "Nguồn ngừng gửi dữ liệu",
      download: "Tải về",
      reportLabel: "Báo cáo (Excel)",
      reportWeek: "Tuần trước",
      reportMonth: "Tháng trước",
      reportQuarter: "Quý trước",
      print: "In trang",
      drivers: "Vì sao thay đổi?",
      driversNote: (w) => `Đóng góp của từng đơn vị vào thay đổi của tỷ lệ giải quyết đúng hạn, ${w} so với kỳ trước (điểm phần trăm).`,
      pulledDown: "Kéo tỷ lệ đúng hạn xuống nhiều nhất",
      pushedUp: "Đẩy tỷ lệ đúng hạn lên nhiều nhất",
      driversNone: "Không có",
      ownDossiers: "Hồ sơ của chính đơn vị",
      colContribution: "Đóng góp",
      points: "điểm %",
      silentNote: (h) =>
        `Đơn vị thường gửi dữ liệu (có sự kiện trong ít nhất 3 của 14 ngày) nhưng đã không gửi gì hơn ${h} giờ qua; số liệu của đơn vị và các cấp trên có thể chưa đầy đủ.`,
      silentNone: "Không có đơn vị nào ngừng gửi dữ liệu.",
      colLastEvent: "Lần gửi cuối",
      colSilentFor: "Đã ngừng gửi",
      qSilent: (n) => `${n} đơn vị đã ngừng gửi dữ liệu:`,
      banner: (n) =>
        `Số liệu có thể chưa đầy đủ: ${n} đơn vị thuộc phạm vi này đã ngừng gửi dữ liệu (xem “Nguồn ngừng gửi dữ liệu”).`,
      bannerSelf: "Số liệu có thể chưa đầy đủ: đơn vị này đã ngừng gửi dữ liệu (xem “Nguồn ngừng gửi dữ liệu”).",
      minCount: `Chỉ xếp hạng đơn vị có ít nhất ${MIN_COUNT} hồ sơ trong kỳ; đơn vị ít hơn đứng cuối, không có hạng.`,
      fewUnranked: "ít hồ sơ, chưa xếp hạng",
      quality: "Cảnh báo chất lượng dữ liệu",
      qOk: "Không phát hiện vấn đề về dữ liệu trong 30 ngày qua.",
      qOrphans: (n) =>
        `${n} sự kiện trong 30 ngày qua thuộc hồ sơ chưa có sự kiện tiếp nhận (nguồn gửi thiếu hoặc gửi chậm sự kiện tiếp nhận).`,
      qOrphanSources: "Nhiều nhất tại:",
      qUnclassified: (n) =>
        `${n} hồ sơ đã giải quyết nhưng không rõ hạn giải quyết; không được tính vào tỷ lệ đúng hạn.`,
      level: { nation: "Cả nước", province: "Tỉnh, thành phố", commune: "Xã, phường, đặc khu" },
      kind: { xa: "Xã", phuong: "Phường", dac_khu: "Đặc khu" },
      childCount: (n, level) => `${n} ${level === "province" ? "tỉnh, thành phố" : "xã, phường, đặc khu"}`,
      rankInProvince: (r, n, p) => `Hạng ${r}/${n} trong ${p} theo tỷ lệ đúng hạn, 30 ngày qua`,
      noRank: "Chưa đủ số liệu để xếp hạng trong tỉnh",
      keyTitle: "Cần khóa đọc",
      keyText:
        "Máy chủ này không công khai số liệu. Hãy nhập khóa đọc do quản trị viên cấp (lệnh chiso keys create --scope read). Khóa chỉ được lưu trong trình duyệt này.",
      keyLabel: "Khóa đọc",
      keySave: "Lưu và xem số liệu",
      keyBad: "Khóa không hợp lệ hoặc đã bị thu hồi. Hãy nhập khóa khác.",
      keyScope: "Khóa này không có quyền đọc số liệu (cần khóa loại read hoặc admin).",
      forgetKey: "Xóa khóa đọc đã lưu",
      foot: "Số liệu tính từ các sự kiện hồ sơ do hệ thống một cửa các cấp gửi về. Tỷ lệ đúng hạn tính trên hồ sơ đã giải quyết; điểm 766 tính trên hồ sơ tiếp nhận trong kỳ. Chưa có thang xếp loại chính thức nên trang không xếp loại.",
      notFound: "Không tìm thấy đơn vị này.",
      back: "Về trang toàn quốc",
    },
    en: {
      title: "Two-tier local government performance",
      subtitle: "Administrative procedure settlement, in real time",
      nation: "Nationwide",
      asOf: "Figures as of",
      polling: "Refreshes every 10 seconds",
      offline: "Cannot reach the server, retrying…",
      loading: "Loading…",
      figures: "Key figures",
      figuresNote:
        "Each line compares with the period of the same length just before, up to the same point: Week = last 7 days against the 7 days before up to this hour 7 days ago; Month = 30 days; Quarter = 90 days. Green: better; red: worse; blue: workload (neither better nor worse).",
      week: "Week",
      month: "Month",
      quarter: "Quarter",
      w7d: "7 days",
      w30d: "30 days",
      w90d: "90 days",
      w7dLong: "last 7 days against the 7 days before, up to the same hour",
      w30dLong: "last 30 days against the 30 days before, up to the same hour",
      w90dLong: "last 90 days against the 90 days before, up to the same hour",
      colPeriod: "Period",
      colAgo: "Compared with",
      colThen: "Then",
      rightNow: "now",
      ago7d: "7 days ago",
      ago30d: "30 days ago",
      ago90d: "90 days ago",
      colValue: "Now",
      colChange: "Change",
      better: "better than the previous period",
      worse: "worse than the previous period",
      same: "unchanged",
      neutral: "change in workload",
      noPrev: "nothing to compare with",
      previousWas: "previous",
      upTo: "up to",
      kpi: {
        on_time_rate: "On-time settlement rate",
        settlement_score: "Settlement progress score (Index 766)",
        settlement_rate_766: "On-time rate, Index 766",
        received: "Dossiers received",
        resolved: "Dossiers settled",
        pending: "Dossiers in progress",
        overdue: "Dossiers overdue",
        online_rate: "Online submissions",
        processing_hours_p50: "Processing time (median)",
      },
      hint: {
        on_time_rate: "Dossiers settled early or on time, out of settled dossiers with a deadline",
        settlement_score: "Out of 20: 20 × the share of dossiers received in the period that were settled on time (Decision 766/QĐ-TTg)",
        received: "Dossiers received in the period",
        resolved: "Dossiers settled in the period",
        pending: "Received and not yet settled",
        overdue: "Not yet settled and past their deadline",
        online_rate: "Dossiers submitted online, out of all received",
        processing_hours_p50: "Half of the dossiers were settled within this time of their receipt",
      },
      scoreOf: "/ 20 points",
      hoursUnit: "h",
      ppUnit: "pts",
      ranking: { province: "Provinces ranked", commune: "Communes ranked" },
      rankingIn: "in",
      sortBy: "Rank by",
      sortOnTime: "On-time rate",
      sortScore: "Score 766",
      filter: "Search by name…",
      rankNote: (kpi, w) =>
        `Ranked by ${kpi} over the last ${w}, highest first; units without data come last. “Change”: the ${kpi} against the ${w} before. Click a name for details.`,
      colRank: "Rank",
      colUnit: "Unit",
      colOnTime: "On time",
      colScore: "Score 766",
      colReceived: "Received",
      colOverdue: "Overdue",
      colDelta: "Change",
      noData: "no data yet",
      few: "few dossiers",
      fewTitle: (n) => `Only ${n} settled dossiers with a deadline in the period: the rate says little yet`,
      noValue: "Cannot be computed: no dossier in this period",
      noRows: "No unit matches.",
      trend: "Weekly trend, last 12 months",
      currentWeek: "current week, not over yet",
      weekOf: "Week of",
      sectors: "By sector, last 30 days",
      colSector: "Sector",
      colResolved: "Settled",
      colOnline: "Online",
      sector: {
        land: "Land",
        civil_status: "Civil status",
        business: "Business registration",
        certification: "Certification",
        social_welfare: "Social welfare",
        labour: "Labour and employment",
        construction: "Construction",
        null: "No sector given",
      },
      risk: "Dossiers about to go late",
      riskNote:
        "Dossiers in progress whose deadline falls within the next 24, 48, 72 hours: late unless settled in time. Compared with 7 days ago.",
      due: { due_24h: "Due within 24 hours", due_48h: "Due within 48 hours", due_72h: "Due within 72 hours" },
      riskTop: "Units with the most dossiers due within 48 hours",
      riskNone: "No dossier is due within the next 48 hours.",
      riskList: (n) => `Dossiers due within 72 hours or overdue (${n})`,
      riskListNone: "No dossier is due within the next 72 hours or overdue.",
      riskMore: (shown, n) => `Showing ${shown} of ${n} dossiers, soonest deadline first.`,
      colDossier: "Dossier",
      colChannel: "Channel",
      colReceivedAt: "Received",
      colDueAt: "Deadline",
      colLeft: "Time left",
      col24: "≤ 24 h",
      col48: "≤ 48 h",
      col72: "≤ 72 h",
      left: (h) => `${h} left`,
      late: (h) => `${h} late`,
      channel: { online: "Online", in_person: "In person", postal: "Postal" },
      duration: (d, h) => (d > 0 ? `${d} d ${h} h` : `${h} h`),
      silentTitle: "Sources that stopped sending",
      download: "Download",
      reportLabel: "Report (Excel)",
      reportWeek: "Last week",
      reportMonth: "Last month",
      reportQuarter: "Last quarter",
      print: "Print",
      drivers: "Why did it change?",
      driversNote: (w) => `What each unit contributed to the change of the on-time rate, ${w} against the period before (percentage points).`,
      pulledDown: "Pulled the on-time rate down most",
      pushedUp: "Pushed the on-time rate up most",
      driversNone: "None",
      ownDossiers: "The unit's own dossiers",
      colContribution: "Contribution",
      points: "pts",
      silentNote: (h) =>
        `Units that normally send (events on at least 3 of 14 days) and have sent nothing for more than ${h} hours; their figures and those above them may be incomplete.`,
      silentNone: "No unit has stopped sending.",
      colLastEvent: "Last sent",
      colSilentFor: "Silent for",
      qSilent: (n) => `${n} units have stopped sending:`,
      banner: (n) => `Figures may be incomplete: ${n} units in this area have stopped sending (see “Sources that stopped sending”).`,
      bannerSelf: "Figures may be incomplete: this unit has stopped sending (see “Sources that stopped sending”).",
      minCount: `Only units with at least ${MIN_COUNT} dossiers in the period are ranked; the others come last, unranked.`,
      fewUnranked: "few dossiers, unranked",
      quality: "Data quality warnings",
      qOk: "No data problem found in the last 30 days.",
      qOrphans: (n) =>
        `${n} events in the last 30 days belong to dossiers whose receipt was never sent (or not yet).`,
      qOrphanSources: "Mostly from:",
      qUnclassified: (n) => `${n} settled dossiers have no known deadline; they are left out of the on-time rate.`,
      level: { nation: "Nation", province: "Province", commune: "Commune" },
      kind: { xa: "Commune", phuong: "Ward", dac_khu: "Special zone" },
      childCount: (n, level) => `${n} ${level === "province" ? "provinces" : "communes, wards and special zones"}`,
      rankInProvince: (r, n, p) => `Ranked ${r} of ${n} in ${p} by on-time rate, last 30 days`,
      noRank: "Not enough data to rank within the province",
      keyTitle: "Read key needed",
      keyText:
        "This server does not publish its figures. Enter a read key from your administrator (chiso keys create --scope read). The key is kept in this browser only.",
      keyLabel: "Read key",
      keySave: "Save and show figures",
      keyBad: "This key is unknown or revoked. Please enter another one.",
      keyScope: "This key may not read figures (a read or admin key is needed).",
      forgetKey: "Forget the saved read key",
      foot: "Figures are computed from the dossier events that one-stop centres send. The on-time rate counts settled dossiers; the 766 score counts the dossiers received in the period. No official rating bands exist, so none are shown.",
      notFound: "No such unit.",
      back: "Back to the nation",
    },
  };

  // ---- state ------------------------------------------------------------------------------

  const state = {
    lang: localStorage.getItem(LANG_STORE) === "en" ? "en" : "vi",
    key: localStorage.getItem(KEY_STORE) || "",
    code: "VN",
    sort: "-on_time_rate",
    window: "30d",
    chartKpi: "on_time_rate",
    filter: "",
    view: null, // the data last loaded
    loadSeq: 0,
    timer: null,
    waitingForKey: false,
    downloads: {}, // table -> the URL of the answer it shows (downloaded with format= and lang=)
  };
  const cache = new Map(); // url -> {etag, data, at}
  const inflight = new Map(); // url -> promise
  const $ = (id) => document.getElementById(id);
  const t = (k) => T[state.lang][k];
  const locale = () => (state.lang === "vi" ? "vi-VN" : "en-GB");
  const esc = (s) =>
    String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

  // ---- API --------------------------------------------------------------------------------

  class AuthError extends Error {
    constructor(status) {
      super(`HTTP ${status}`);
      this.status = status;
    }
  }
  class HttpError extends Error {
    constructor(status, detail) {
      super(detail || `HTTP ${status}`);
      this.status = status;
    }
  }

  async function fetchApi(path) {
    const headers = { Accept: "application/json" };
    const cached = cache.get(path);
    if (cached && cached.etag) headers["If-None-Match"] = cached.etag;
    if (state.key) headers.Authorization = `Bearer ${state.key}`;
    const r = await fetch(path, { headers, cache: "no-store" });
    if (r.status === 304 && cached) {
      cached.at = Date.now();
      return cached.data;
    }
    if (r.status === 401 || r.status === 403) throw new AuthError(r.status);
    if (!r.ok) {
      let detail = "";
      try {
        detail = (await r.json()).detail;
      } catch (_) {
        /* not JSON */
      }
      throw new HttpError(r.status, detail);
    }
    const data = await r.json();
    cache.set(path, { etag: r.headers.get("ETag"), data, at: Date.now() });
    return data;
  }

  // GET with If-None-Match; an answer younger than maxAge ms is reused without asking, and a
  // request still under way is joined rather than repeated (slow answers never pile up).
  function api(path, maxAge = 0) {
    const cached = cache.get(path);
    if (cached && maxAge && Date.now() - cached.at < maxAge) return Promise.resolve(cached.data);
    if (inflight.has(path)) return inflight.get(path);
    const p = fetchApi(path).finally(() => inflight.delete(path));
    inflight.set(path, p);
    return p;
  }

  const q = (params) => new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null)).toString();
  const kpisUrl = (code, window) => `api/v1/units/${encodeURIComponent(code)}/kpis?${q({ window })}`;
  const rankUrl = (params) => `api/v1/rankings?${q(params)}`;
  const seriesUrl = (code, kpi) => `api/v1/units/${encodeURIComponent(code)}/series?${q({ kpi, interval: "week" })}`;
  const silentUrl = (code) => `api/v1/units/${encodeURIComponent(code)}/silent?${q({ limit: 100 })}`;
  const driversUrl = (code, window) => `api/v1/units/${encodeURIComponent(code)}/drivers?${q({ kpi: "on_time_rate", window, limit: 5000 })}`;
  const atRiskUrl = (code) => `api/v1/units/${encodeURIComponent(code)}/at-risk?${q({ within: "72h", include_overdue: "true", limit: 100 })}`;

  // ---- loading ----------------------------------------------------------------------------

  // The figures and the ranking are polled every POLL_MS; the panels around them (trend,
  // sectors, data quality) load on their own and less often, so a slow answer delays only its panel.
  async function load() {
    const seq = ++state.loadSeq;
    clearTimeout(state.timer);
    const code = state.code;
    try {
      const unit = await api(`api/v1/units/${encodeURIComponent(code)}`, 300000);
      const ctx = context(unit);
      state.downloads.ranking = rankUrl({ level: ctx.childLevel, parent: ctx.rankParent, window: state.window, sort: state.sort, min_count: MIN_COUNT });
      const [k7, k30, k90, ranking] = await Promise.all([
        api(kpisUrl(code, "7d")),
        api(kpisUrl(code, "30d")),
        api(kpisUrl(code, "90d")),
        api(rankUrl({ level: ctx.childLevel, parent: ctx.rankParent, window: state.window, sort: state.sort, limit: 5000, min_count: MIN_COUNT })),
      ]);
      if (seq !== state.loadSeq) return; // the user went elsewhere meanwhile
      if (!state.view || state.view.code !== code) state.view = { code };
      Object.assign(state.view, { unit, k7, k30, k90, ranking, childLevel: ctx.childLevel });
      render();
      setStatus("ok");
      loadSides(code, ctx);
    } catch (err) {
      if (seq !== state.loadSeq) return;
      if (err instanceof AuthError) {
        askForKey(err.status);
        return; // polling resumes once a key is given
      }
      if (err instanceof HttpError && err.status === 404) {
        renderNotFound();
      }
      setStatus("error", err);
    }
    state.timer = setTimeout(poll, POLL_MS);
  }

  // no polling while the page is hidden (another tab, a locked phone); at once when it shows again
  function poll() {
    if (document.hidden) {
      state.paused = true;
      return;
    }
    load();
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.paused && !state.waitingForKey) {
      state.paused = false;
      load();
    }
  });

  function context(unit) {
    const level = unit.level;
    const province = level === "commune" ? unit.parent : level === "province" ? unit.code : null;
    return {
      level,
      province,
      childLevel: level === "nation" ? "province" : "commune",
      rankParent: level === "nation" ? undefined : province,
      compareWith: level === "nation" ? null : unit.parent,
    };
  }

  function loadSides(code, ctx) {
    // a panel whose answer fails (or that an older server does not have) is left out quietly
    const side = (name, url, maxAge, draw) =>
      api(url, maxAge)
        .then((data) => {
          if (!state.view || state.view.code !== code) return;
          state.view[name] = data;
          draw(state.view);
        })
        .catch((err) => {
          if (err instanceof AuthError) {
            askForKey(err.status);
            return;
          }
          if (!state.view || state.view.code !== code) return;
          state.view[name] = null;
          draw(state.view);
        });
    side("silent", silentUrl(code), SIDE_MS, (v) => {
      renderSilent(v);
      renderQuality(v);
    });
    state.downloads.silent = silentUrl(code);
    state.downloads.sectors = `api/v1/units/${encodeURIComponent(code)}/sectors?window=30d`;
    if (ctx.level === "commune") {
      side("riskList", atRiskUrl(code), SIDE_MS, renderRisk);
      state.downloads.risk = atRiskUrl(code);
    } else {
      const top = { level: ctx.childLevel, parent: ctx.rankParent, window: "7d", sort: "-due_48h", limit: RISK_TOP, min_count: MIN_COUNT };
      side("riskTop", rankUrl(top), SIDE_MS, renderRisk);
      state.downloads.risk = rankUrl({ ...top, limit: undefined });
    }
    side("drivers", driversUrl(code, state.window), SIDE_MS, renderDrivers);
    side("series", seriesUrl(code, state.chartKpi), SLOW_MS, renderChart);
    if (ctx.compareWith) side("parentSeries", seriesUrl(ctx.compareWith, state.chartKpi), SLOW_MS, renderChart);
    side("sectors", `api/v1/units/${encodeURIComponent(code)}/sectors?window=30d`, SIDE_MS, renderSectors);
    if (ctx.level !== "commune") {
      const orphans = { level: "commune", parent: ctx.rankParent, window: "30d", sort: "-orphans", limit: 5 };
      side("orphanSources", rankUrl(orphans), SIDE_MS, renderQuality);
    } else {
      const siblings = { level: "commune", parent: ctx.province, window: "30d", sort: "-on_time_rate", limit: 5000, min_count: MIN_COUNT };
      side("provinceRank", rankUrl(siblings), SIDE_MS, renderHead);
    }
  }

  // ---- formatting -------------------------------------------------------------------------

  const nf = (digits) => new Intl.NumberFormat(locale(), { minimumFractionDigits: digits, maximumFractionDigits: digits });

  function fmt(v, kind) {
    if (v === null || v === undefined) return "—";
    switch (kind) {
      case "rate":
        return `${nf(1).format(v * 100)}%`;
      case "ratePlain": // axis ticks: whole percentages
        return `${nf(0).format(v * 100)}%`;
      case "score":
        return nf(2).format(v);
      case "hours":
        return `${nf(1).format(v)} ${t("hoursUnit")}`;
      default:
        return nf(0).format(v);
    }
  }

  function fmtChange(c, kind) {
    if (c === null || c === undefined) return "—";
    const sign = c > 0 ? "+" : c < 0 ? "−" : "±";
    const a = Math.abs(c);
    switch (kind) {
      case "rate":
        return `${sign}${nf(1).format(a * 100)} ${t("ppUnit")}`;
      case "score":
        return `${sign}${nf(2).format(a)}`;
      case "hours":
        return `${sign}${nf(1).format(a)} ${t("hoursUnit")}`;
      default:
        return `${sign}${nf(0).format(a)}`;
    }
  }

  // "better" | "worse" | "same" | "neutral" | "none"
  function verdict(change, better, kind) {
    if (change === null || change === undefined) return "none";
    const shown = kind === "rate" ? Math.round(change * 1000) : kind === "count" ? change : Math.round(change * 100);
    if (shown === 0) return "same";
    if (!better) return "neutral";
    return change > 0 === better > 0 ? "better" : "worse";
  }
  const arrow = (change, v) => (v === "none" ? "" : v === "same" ? "=" : change > 0 ? "▲" : "▼");

  // `until`: the instant the previous figures stand at (previous.period.until, a period in progress)
  function changeCell(change, previous, kpi, until) {
    const kind = KINDS[kpi] || "count";
    const v = verdict(change, BETTER[kpi] || 0, kind);
    const at = until ? `, ${t("upTo")} ${asOfText(until)}` : "";
    const why = v === "none" ? t("noPrev") : `${t(v)} (${t("previousWas")}${at}: ${fmt(previous, kind)})`;
    const raw = change === null || change === undefined ? "" : change;
    return `<span class="chg ${v}" data-raw="${raw}" title="${esc(why)}"><b aria-hidden="true">${arrow(change, v)}</b> ${esc(
      v === "none" ? "—" : fmtChange(change, kind),
    )}<span class="sr"> ${esc(why)}</span></span>`;
  }

  function asOfText(s) {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?([+-]\d{2}:\d{2}|Z)$/.exec(s || "");
    if (!m) return s || "";
    const [, y, mo, d, hms, off] = m;
    const zone = off === "Z" ? "UTC" : `UTC${off}`;
    return state.lang === "vi" ? `${hms} ngày ${d}/${mo}/${y} (${zone})` : `${d}/${mo}/${y} ${hms} (${zone})`;
  }

  function dateText(iso) {
    const [y, m, d] = iso.split("-");
    return `${d}/${m}/${y}`;
  }

  const unitLabel = (u) => (u.code === "VN" ? t("nation") : u.name);
  const fold = (s) =>
    s
      .normalize("NFD")
      .replace(/[\u0300-\u036f]/g, "")
      .replace(/đ/g, "d")
      .replace(/Đ/g, "D")
      .toLowerCase();

  // ---- rendering --------------------------------------------------------------------------

  function applyStaticTexts() {
    document.documentElement.lang = state.lang;
    document.querySelectorAll("[data-t]").forEach((el) => {
      const v = t(el.dataset.t);
      if (typeof v === "string") el.textContent = v;
    });
    document.querySelectorAll("[data-tp]").forEach((el) => {
      el.placeholder = t(el.dataset.tp);
    });
    $("lang-vi").setAttribute("aria-pressed", String(state.lang === "vi"));
    $("lang-en").setAttribute("aria-pressed", String(state.lang === "en"));
    $("foot-text").textContent = t("foot");
    $("forget-key").hidden = !state.key;
    const sel = $("chart-kpi");
    if (sel.dataset.lang !== state.lang) {
      // rebuilt only when the language changes, so a poll never closes the open list
      sel.innerHTML = CHART_KPIS.map(
        (k) => `<option value="${k}"${k === state.chartKpi ? " selected" : ""}>${esc(t("kpi")[k])}</option>`,
      ).join("");
      sel.dataset.lang = state.lang;
    }
    document.querySelectorAll("#rank-sort button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.sort === state.sort)));
    document.querySelectorAll("#rank-window button").forEach((b) =>
      b.setAttribute("aria-pressed", String(b.dataset.window === state.window)),
    );
  }

  function render() {
    applyStaticTexts();
    const v = state.view;
    if (!v) return;
    renderHead(v);
    renderFigures(v);
    renderBanner(v);
    renderRisk(v);
    renderSilent(v);
    renderQuality(v);
    renderRanking(v);
    renderChart(v);
    renderSectors(v);
    renderDrivers(v);
    $("as-of").textContent = `${t("asOf")} ${asOfText(v.k30.as_of)}`;
    document.title = `${unitLabel(v.unit)} · chiso`;
  }

  function renderHead(v) {
    const u = v.unit;
    const crumbs = [...(u.parents || []), { code: u.code, name: u.name, level: u.level }];
    $("crumbs").innerHTML = crumbs
      .map((c, i) =>
        i === crumbs.length - 1
          ? `<span aria-current="page">${esc(unitLabel(c))}</span>`
          : `<a href="#/${c.code === "VN" ? "" : `u/${esc(c.code)}`}">${esc(unitLabel(c))}</a>`,
      )
      .join(' <span class="sep" aria-hidden="true">›</span> ');
    let sub = u.level === "commune" ? t("kind")[u.kind] || t("level").commune : t("level")[u.level];
    if (u.level !== "nation") sub += ` · ${u.code}`;
    let extra = "";
    if (u.level !== "commune" && v.ranking) extra = t("childCount")(v.ranking.total, v.childLevel);
    if (u.level === "commune" && v.provinceRank) {
      const row = v.provinceRank.items.find((r) => r.unit.code === u.code);
      const pname = (u.parents || []).find((p) => p.level === "province")?.name || "";
      extra = row && row.rank ? t("rankInProvince")(row.rank, v.provinceRank.total, pname) : t("noRank");
    }
    $("unit-head").innerHTML = `<h2 id="unit-name">${esc(unitLabel(u))}</h2><p class="unit-sub">${esc(sub)}${
      extra ? ` · <span id="unit-extra">${esc(extra)}</span>` : ""
    }</p>`;
  }

  function renderFigures(v) {
    const ks = { "7d": v.k7, "30d": v.k30, "90d": v.k90 };
    $("figures").innerHTML = FIGURES.map((f) => (f.point ? pointFigure(f, ks) : periodFigure(f, ks))).join("");
  }

  // a flow over a period: one line per period, its value and its change against the period before
  function periodFigure(f, ks) {
    const rows = WINDOWS.map(([w, name]) => {
      const a = ks[w];
      const value = a.kpis[f.kpi];
      const extra = f.kpi === "settlement_score" && value !== null ? ` <small>${esc(t("scoreOf"))}</small>` : "";
      const none = value === null ? ` title="${esc(t("noValue"))}"` : "";
      return `<tr data-window="${w}" title="${esc(t(`w${w}Long`))}"><th scope="row">${esc(t(name))}<small>${esc(
        t(`w${w}`),
      )}</small></th><td class="val" data-raw="${value ?? ""}"${none}>${esc(fmt(value, f.kind))}${extra}</td><td>${changeCell(
        a.change[f.kpi],
        a.previous.kpis[f.kpi],
        f.kpi,
        a.previous.period.until,
      )}</td></tr>`;
    }).join("");
    return `<article class="fig" data-kpi="${f.kpi}"><h3 title="${esc(t("hint")[f.kpi])}">${esc(t("kpi")[f.kpi])}</h3>
      <p class="hint">${esc(t("hint")[f.kpi])}</p>
      <table><thead><tr><th>${esc(t("colPeriod"))}</th><th>${esc(t("colValue"))}</th><th>${esc(t("colChange"))}</th></tr></thead>
      <tbody>${rows}</tbody></table></article>`;
  }

  // a count at one moment (now): shown once, then against 7, 30 and 90 days ago
  function pointFigure(f, ks) {
    const now = ks["7d"].kpis[f.kpi];
    const rows = WINDOWS.map(([w]) => {
      const a = ks[w];
      const before = a.previous.kpis[f.kpi];
      return `<tr data-window="${w}"><th scope="row">${esc(t(`ago${w}`))}</th><td class="prev" data-raw="${before ?? ""}">${esc(
        fmt(before, f.kind),
      )}</td><td>${changeCell(a.change[f.kpi], before, f.kpi, a.previous.period.until)}</td></tr>`;
    }).join("");
    return `<article class="fig point" data-kpi="${f.kpi}"><h3 title="${esc(t("hint")[f.kpi])}">${esc(t("kpi")[f.kpi])}</h3>
      <p class="hint">${esc(t("hint")[f.kpi])}</p>
      <p class="now"><span class="val" data-raw="${now ?? ""}">${esc(fmt(now, f.kind))}</span> <small>${esc(t("rightNow"))}</small></p>
      <table><thead><tr><th>${esc(t("colAgo"))}</th><th>${esc(t("colThen"))}</th><th>${esc(t("colChange"))}</th></tr></thead>
      <tbody>${rows}</tbody></table></article>`;
  }

  function renderQuality(v) {
    const k = v.k30.kpis;
    const items = [];
    if (k.orphans > 0) {
      let li = esc(t("qOrphans")(fmt(k.orphans, "count")));
      const sources = (v.orphanSources?.items || []).filter((r) => r.kpis.orphans > 0);
      if (sources.length && v.unit.level !== "commune") {
        li += ` ${esc(t("qOrphanSources"))} ${sources
          .map((r) => `<a href="#/u/${esc(r.unit.code)}">${esc(r.unit.name)}</a> (${fmt(r.kpis.orphans, "count")})`)
          .join(", ")}.`;
      }
      items.push(["orphans", li]);
    }
    if (k.resolved_unclassified > 0) items.push(["unclassified", esc(t("qUnclassified")(fmt(k.resolved_unclassified, "count")))]);
    const silent = v.silent?.items || [];
    if (v.silent && v.silent.total > 0) {
      items.push([
        "silent",
        v.unit.level === "commune"
          ? esc(t("bannerSelf"))
          : `${esc(t("qSilent")(fmt(v.silent.total, "count")))} ${silent
              .slice(0, 20)
              .map((it) => `<a href="#/u/${esc(it.unit.code)}">${esc(it.unit.name)}</a>`)
              .join(", ")}${v.silent.total > 20 ? ", …" : "."}`,
      ]);
    }
    const pending = v.silent === undefined || (v.unit.level !== "commune" && v.orphanSources === undefined);
    if (pending && !items.length) {
      $("quality").innerHTML = `<li class="loading" data-warning="loading">${esc(t("loading"))}</li>`;
      return;
    }
    $("quality").innerHTML = items.length
      ? items.map(([kind, html]) => `<li class="warn" data-warning="${kind}"><span class="icon" aria-hidden="true">⚠</span><span>${html}</span></li>`).join("")
      : `<li class="ok" data-warning="none"><span class="icon" aria-hidden="true">✓</span><span>${esc(t("qOk"))}</span></li>`;
  }

  // ---- early warning: silent sources and dossiers about to go late -------------------------

  function durationText(hours) {
    const d = Math.floor(hours / 24);
    return t("duration")(d, nf(0).format(Math.floor(hours - d * 24)));
  }

  function shortTime(iso) {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}:\d{2})/.exec(iso || "");
    return m ? `${m[4]} ${m[3]}/${m[2]}/${m[1]}` : iso || "—";
  }

  // a banner on a unit whose figures may be incomplete: sources at or below it are silent
  function renderBanner(v) {
    const n = v.k7?.kpis?.silent_units;
    const el = $("silent-banner");
    if (typeof n !== "number" || n <= 0) {
      el.hidden = true;
      el.innerHTML = "";
      return;
    }
    const self = v.unit.level === "commune";
    el.innerHTML = `<span class="icon" aria-hidden="true">⚠</span> <span>${esc(self ? t("bannerSelf") : t("banner")(fmt(n, "count")))}</span>`;
    el.dataset.silent = String(n);
    el.hidden = false;
  }

  // counts due within 24/48/72 h now against 7 days ago; the top units (nation, province) or the
  // list of a commune's dossiers with their deadlines
  function renderRisk(v) {
    const k = v.k7;
    const have = k && RISK.every((r) => typeof k.kpis[r] === "number");
    $("risk-counts").innerHTML = have
      ? RISK.map((r) => {
          const before = k.previous.kpis[r];
          return `<article class="fig point" data-kpi="${r}"><h3>${esc(t("due")[r])}</h3>
          <p class="now"><span class="val" data-raw="${k.kpis[r]}">${esc(fmt(k.kpis[r], "count"))}</span> <small>${esc(t("rightNow"))}</small></p>
          <table><tbody><tr data-window="7d"><th scope="row">${esc(t("ago7d"))}</th><td class="prev" data-raw="${before ?? ""}">${esc(
            fmt(before, "count"),
          )}</td><td>${changeCell(k.change[r], before, r, k.previous.period.until)}</td></tr></tbody></table></article>`;
        }).join("")
      : "";
    const list = v.unit.level === "commune" ? v.riskList : v.riskTop;
    $("risk-panel").hidden = !have && !list;
    const title = $("risk-list-title");
    if (!list) {
      title.textContent = "";
      $("risk-list").innerHTML = list === undefined ? `<tbody><tr><td class="empty">${esc(t("loading"))}</td></tr></tbody>` : "";
      return;
    }
    if (v.unit.level === "commune") {
      title.textContent = t("riskList")(fmt(list.total, "count"));
      const names = t("sector");
      const rows = list.items
        .map((it) => {
          const h = Math.abs(it.hours_left);
          const left = it.overdue ? t("late")(durationText(h)) : t("left")(durationText(h));
          return `<tr data-dossier="${esc(it.dossier_id)}" class="${it.overdue ? "overdue" : it.hours_left < 24 ? "soon" : ""}">
            <td class="name">${esc(it.dossier_id)}</td>
            <td class="wide">${esc(it.sector === null ? names.null : names[it.sector] || it.sector)}</td>
            <td class="wide">${esc(shortTime(it.received_at))}</td>
            <td data-raw="${esc(it.due_at)}">${esc(shortTime(it.due_at))}</td>
            <td class="num left" data-raw="${it.hours_left}">${esc(left)}</td>
            <td class="wide">${esc(t("channel")[it.channel] || it.channel || "—")}</td></tr>`;
        })
        .join("");
      const head = `<thead><tr><th scope="col">${esc(t("colDossier"))}</th><th scope="col" class="wide">${esc(t("colSector"))}</th>
        <th scope="col" class="wide">${esc(t("colReceivedAt"))}</th><th scope="col">${esc(t("colDueAt"))}</th>
        <th scope="col" class="num">${esc(t("colLeft"))}</th><th scope="col" class="wide">${esc(t("colChannel"))}</th></tr></thead>`;
      const more = list.total > list.items.length ? `<caption>${esc(t("riskMore")(list.items.length, list.total))}</caption>` : "";
      $("risk-list").innerHTML = rows
        ? more + head + `<tbody>${rows}</tbody>`
        : `<tbody><tr><td class="empty" data-risk="none">${esc(t("riskListNone"))}</td></tr></tbody>`;
      return;
    }
    title.textContent = t("riskTop");
    const items = list.items.filter((it) => it.kpis.due_48h > 0);
    const rows = items
      .map(
        (it) => `<tr data-code="${esc(it.unit.code)}"><td class="rank">${it.rank ?? "—"}</td>
          <td class="name"><a href="#/u/${esc(it.unit.code)}">${esc(it.unit.name)}</a></td>
          <td class="num" data-kpi="due_24h">${esc(fmt(it.kpis.due_24h, "count"))}</td>
          <td class="num" data-kpi="due_48h">${esc(fmt(it.kpis.due_48h, "count"))}</td>
          <td class="num" data-kpi="due_72h">${esc(fmt(it.kpis.due_72h, "count"))}</td>
          <td class="num wide" data-kpi="overdue">${esc(fmt(it.kpis.overdue, "count"))}</td></tr>`,
      )
      .join("");
    const head = `<thead><tr><th class="rank" scope="col">${esc(t("colRank"))}</th><th scope="col">${esc(t("colUnit"))}</th>
      <th scope="col" class="num">${esc(t("col24"))}</th><th scope="col" class="num sorted">${esc(t("col48"))}</th>
      <th scope="col" class="num">${esc(t("col72"))}</th><th scope="col" class="num wide">${esc(t("colOverdue"))}</th></tr></thead>`;
    $("risk-list").innerHTML = rows
      ? head + `<tbody>${rows}</tbody>`
      : `<tbody><tr><td class="empty" data-risk="none">${esc(t("riskNone"))}</td></tr></tbody>`;
  }

  // the silent units at or below the unit, longest silent first, with how long
  function renderSilent(v) {
    const s = v.silent;
    const note = $("silent-note");
    if (!s) {
      note.textContent = s === null ? "" : t("loading");
      $("silent-list").innerHTML = "";
      return;
    }
    note.textContent = t("silentNote")(nf(0).format(s.silent_after_hours));
    const rows = s.items
      .map(
        (it) => `<tr data-code="${esc(it.unit.code)}"><td class="name"><a href="#/u/${esc(it.unit.code)}">${esc(unitLabel(it.unit))}</a></td>
          <td>${esc(shortTime(it.last_event_at))}</td>
          <td class="num" data-raw="${it.silent_hours}">${esc(durationText(it.silent_hours))}</td></tr>`,
      )
      .join("");
    $("silent-list").innerHTML = rows
      ? `<thead><tr><th scope="col">${esc(t("colUnit"))}</th><th scope="col">${esc(t("colLastEvent"))}</th><th scope="col" class="num">${esc(
          t("colSilentFor"),
        )}</th></tr></thead><tbody>${rows}</tbody>`
      : `<tbody><tr><td class="empty" data-silent="none">${esc(t("silentNone"))}</td></tr></tbody>`;
  }

  function renderRanking(v) {
    const r = v.ranking;
    const u = v.unit;
    const sortKpi = state.sort.replace(/^-/, "");
    const wLabel = t(`w${state.window}`);
    let title = t("ranking")[v.childLevel];
    if (u.level === "province") title += ` ${t("rankingIn")} ${u.name}`;
    if (u.level === "commune") {
      const p = (u.parents || []).find((x) => x.level === "province");
      if (p) title += ` ${t("rankingIn")} ${p.name}`;
    }
    $("ranking-title").textContent = title;
    $("ranking-note").textContent = `${t("rankNote")(t("kpi")[sortKpi].toLowerCase(), wLabel)} ${t("minCount")}`;
    const f = fold(state.filter.trim());
    const rows = r.items.filter((it) => !f || fold(it.unit.name).includes(f) || it.unit.code.includes(f));
    const head = `<thead><tr>
      <th class="rank" scope="col">${esc(t("colRank"))}</th>
      <th scope="col">${esc(t("colUnit"))}</th>
      <th scope="col" class="num${sortKpi === "on_time_rate" ? " sorted" : " wide"}">${esc(t("colOnTime"))}</th>
      <th scope="col" class="num${sortKpi === "settlement_score" ? " sorted" : " wide"}">${esc(t("colScore"))}</th>
      <th scope="col" class="num wide">${esc(t("colReceived"))}</th>
      <th scope="col" class="num wide">${esc(t("colOverdue"))}</th>
      <th scope="col" class="num">${esc(t("colDelta"))}</th></tr></thead>`;
    const body = rows
      .map((it) => {
        const k = it.kpis;
        const cur = it.unit.code === u.code ? " current" : "";
        const nodata = it.rank === null ? " nodata" : "";
        const pct = k.on_time_rate === null ? 0 : Math.round(k.on_time_rate * 100);
        const settled = k.resolved_early + k.resolved_on_time + k.resolved_late;
        const few = it.rank !== null && settled < FEW_SETTLED;
        const unranked = it.rank === null && k[sortKpi] !== null; // fewer than MIN_COUNT dossiers behind the figure
        return `<tr data-code="${esc(it.unit.code)}" class="row${cur}${nodata}${few ? " few" : ""}">
          <td class="rank">${it.rank ?? "—"}</td>
          <td class="name"><a href="#/u/${esc(it.unit.code)}">${esc(it.unit.name)}</a>${
            unranked
              ? ` <small class="unranked">${esc(t("fewUnranked"))}</small>`
              : it.rank === null
                ? ` <small>${esc(t("noData"))}</small>`
                : few ? ` <small title="${esc(t("fewTitle")(settled))}">${esc(t("few"))}</small>` : ""
          }</td>
          <td class="num${sortKpi === "on_time_rate" ? "" : " wide"}" data-raw="${k.on_time_rate ?? ""}"><span class="meter"><span class="meter-fill" style="width:${pct}%"></span></span>${esc(
            fmt(k.on_time_rate, "rate"),
          )}</td>
          <td class="num${sortKpi === "settlement_score" ? "" : " wide"}" data-raw="${k.settlement_score ?? ""}">${esc(fmt(k.settlement_score, "score"))}</td>
          <td class="num wide">${esc(fmt(k.received, "count"))}</td>
          <td class="num wide">${esc(fmt(k.overdue, "count"))}</td>
          <td class="num">${changeCell(it.change[sortKpi], k[sortKpi] === null || it.change[sortKpi] === null ? null : k[sortKpi] - it.change[sortKpi], sortKpi)}</td>
        </tr>`;
      })
      .join("");
    $("ranking").innerHTML = head + `<tbody>${body || `<tr><td colspan="7" class="empty">${esc(t("noRows"))}</td></tr>`}</tbody>`;
    if (u.level === "commune" && !state.scrolledTo) {
      const row = $("ranking").querySelector("tr.current");
      if (row) {
        const wrap = $("ranking-wrap");
        wrap.scrollTop = Math.max(0, row.offsetTop - wrap.clientHeight / 2);
        state.scrolledTo = u.code;
      }
    }
  }

  function renderSectors(v) {
    if (!v.sectors || v.sectors.unit.code !== v.code) {
      $("sectors").innerHTML = `<tbody><tr><td class="empty">${esc(t("loading"))}</td></tr></tbody>`;
      return;
    }
    const items = [...v.sectors.items].sort((a, b) => b.kpis.received - a.kpis.received);
    const names = t("sector");
    const head = `<thead><tr><th scope="col">${esc(t("colSector"))}</th><th class="num" scope="col">${esc(
      t("colReceived"),
    )}</th><th class="num" scope="col">${esc(t("colResolved"))}</th><th class="num" scope="col">${esc(
      t("colOnTime"),
    )}</th><th class="num wide" scope="col">${esc(t("colOverdue"))}</th><th class="num wide" scope="col">${esc(t("colOnline"))}</th></tr></thead>`;
    const body = items
      .map(
        (it) => `<tr data-sector="${esc(it.sector ?? "")}"><td>${esc(it.sector === null ? names.null : names[it.sector] || it.sector)}</td>
        <td class="num">${esc(fmt(it.kpis.received, "count"))}</td><td class="num">${esc(fmt(it.kpis.resolved, "count"))}</td>
        <td class="num">${esc(fmt(it.kpis.on_time_rate, "rate"))}</td><td class="num wide">${esc(fmt(it.kpis.overdue, "count"))}</td>
        <td class="num wide">${esc(fmt(it.kpis.online_rate, "rate"))}</td></tr>`,
      )
      .join("");
    $("sectors").innerHTML = head + `<tbody>${body || `<tr><td colspan="6" class="empty">${esc(t("noData"))}</td></tr>`}</tbody>`;
  }

  // Vì sao thay đổi? the five parts that pulled the on-time rate down most, and the five that pushed it up
  function renderDrivers(v) {
    const d = v.drivers;
    $("drivers-note").textContent = t("driversNote")(t(`w${state.window}`));
    if (!d || d.unit.code !== v.code) {
      const text = d === null ? t("driversNone") : t("loading");
      $("drivers-down").innerHTML = $("drivers-up").innerHTML = `<tbody><tr><td class="empty">${esc(text)}</td></tr></tbody>`;
      return;
    }
    const known = d.items.filter((it) => it.contribution !== null);
    const down = known.filter((it) => it.contribution < 0).slice(0, 5);
    const up = known.filter((it) => it.contribution > 0).reverse().slice(0, 5);
    const rows = (items, cls) =>
      items
        .map((it) => {
          const name = it.own ? t("ownDossiers") : it.unit.name;
          const link = it.own ? esc(name) : `<a href="#/u/${esc(it.unit.code)}">${esc(name)}</a>`;
          const pts = `${it.contribution > 0 ? "+" : "−"}${nf(2).format(Math.abs(it.contribution) * 100)} ${t("points")}`;
          return `<tr data-code="${esc(it.unit.code)}" data-own="${it.own}"><td class="name">${link}</td>
            <td class="num" data-raw="${it.value ?? ""}">${esc(fmt(it.value, "rate"))}</td>
            <td class="num chg ${cls}" data-raw="${it.contribution}">${esc(pts)}</td></tr>`;
        })
        .join("");
    const head = `<thead><tr><th scope="col">${esc(t("colUnit"))}</th><th scope="col" class="num">${esc(t("colOnTime"))}</th><th scope="col" class="num">${esc(
      t("colContribution"),
    )}</th></tr></thead>`;
    const none = `<tbody><tr><td class="empty">${esc(t("driversNone"))}</td></tr></tbody>`;
    $("drivers-down").innerHTML = down.length ? head + `<tbody>${rows(down, "worse")}</tbody>` : none;
    $("drivers-up").innerHTML = up.length ? head + `<tbody>${rows(up, "better")}</tbody>` : none;
  }

  // a download goes through fetch (the read key is a header, not a cookie), then is saved from a blob
  async function download(url, format) {
    const full = `${url}${url.includes("?") ? "&" : "?"}${q({ format, lang: state.lang })}`;
    const headers = {};
    if (state.key) headers.Authorization = `Bearer ${state.key}`;
    const r = await fetch(full, { headers, cache: "no-store" });
    if (r.status === 401 || r.status === 403) {
      askForKey(r.status);
      return;
    }
    if (!r.ok) {
      setStatus("error", new HttpError(r.status));
      return;
    }
    const blob = await r.blob();
    const m = /filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "");
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = m ? m[1] : `chiso.${format}`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  }

  // ---- the trend chart: a small hand-written SVG line chart -------------------------------

  function renderChart(v) {
    const kpi = state.chartKpi;
    const kind = KINDS[kpi] || "count";
    const el = $("chart");
    if (!v.series || v.series.kpi !== kpi || v.series.unit.code !== v.code) {
      el.innerHTML = `<p class="empty">${esc(t("loading"))}</p>`;
      $("chart-legend").innerHTML = "";
      return;
    }
    const lines = [{ name: unitLabel(v.unit), points: v.series.points, cls: "main" }];
    if (v.parentSeries && v.parentSeries.kpi === kpi && v.parentSeries.unit.code === v.unit.parent) lines.push({ name: unitLabel(v.parentSeries.unit), points: v.parentSeries.points, cls: "ref" });
    const width = Math.max(280, Math.floor(el.clientWidth || 640));
    const height = width < 520 ? 220 : 280;
    const m = { l: width < 520 ? 42 : 52, r: 14, t: 14, b: 30 };
    const n = lines[0].points.length;
    const all = lines.flatMap((l) => l.points.map((p) => p.value)).filter((x) => x !== null);
    if (!n || !all.length) {
      el.innerHTML = `<p class="empty" data-chart="empty">${esc(t("noData"))}</p>`;
      $("chart-legend").innerHTML = "";
      return;
    }
    let lo;
    let hi;
    let step;
    if (kind === "rate") {
      // from a round figure below the lowest value up to 100 %, ticks on round figures
      hi = 1;
      const low = Math.max(0, Math.min(...all) - 0.02);
      step = 1 - low <= 0.12 ? 0.02 : 1 - low <= 0.3 ? 0.05 : 1 - low <= 0.6 ? 0.1 : 0.2;
      lo = Math.max(0, Math.floor(low / step) * step);
    } else {
      lo = 0;
      const max = Math.max(...all, 1);
      const mag = 10 ** Math.floor(Math.log10(max));
      step = [1, 2, 5, 10].map((s) => s * mag).find((s) => max / s <= 5) || mag * 10;
      hi = Math.ceil((max * 1.05) / step) * step;
    }
    const X = (i) => m.l + (n === 1 ? 0.5 : i / (n - 1)) * (width - m.l - m.r);
    const Y = (val) => m.t + (1 - (val - lo) / (hi - lo)) * (height - m.t - m.b);
    const parts = [];
    for (let i = 0; lo + i * step <= hi + 1e-9; i++) {
      const y = lo + i * step;
      const yy = Y(y).toFixed(1);
      parts.push(`<line class="grid" x1="${m.l}" x2="${width - m.r}" y1="${yy}" y2="${yy}"/>`);
      parts.push(`<text class="ytick" x="${m.l - 6}" y="${yy}" dy="0.32em" text-anchor="end">${esc(fmt(y, kind === "rate" ? "ratePlain" : "count"))}</text>`);
    }
    // month labels on the weeks where a month starts
    let lastX = -1e9;
    const months = state.lang === "vi" ? (mo) => `T${mo}` : (mo) => ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][mo - 1];
    lines[0].points.forEach((p, i) => {
      const prev = lines[0].points[i - 1];
      const mo = Number(p.start.slice(5, 7));
      if (prev && Number(prev.start.slice(5, 7)) === mo) return;
      const x = X(i);
      if (x - lastX < 34) return;
      lastX = x;
      const label = mo === 1 || i === 0 ? `${months(mo)}/${p.start.slice(2, 4)}` : months(mo);
      parts.push(`<line class="xtickline" x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${height - m.b}" y2="${height - m.b + 4}"/>`);
      parts.push(`<text class="xtick" x="${x.toFixed(1)}" y="${height - m.b + 16}" text-anchor="middle">${esc(label)}</text>`);
    });
    parts.push(`<line class="axis" x1="${m.l}" x2="${width - m.r}" y1="${height - m.b}" y2="${height - m.b}"/>`);
    // reference line first, the unit's own line on top
    for (const line of [...lines].reverse()) {
      let d = "";
      let pen = false;
      line.points.forEach((p, i) => {
        if (p.value === null) {
          pen = false;
          return;
        }
        d += `${pen ? "L" : "M"}${X(i).toFixed(1)},${Y(p.value).toFixed(1)}`;
        pen = true;
      });
      parts.push(`<path class="line ${line.cls}" d="${d}"/>`);
      if (line.cls === "main") {
        line.points.forEach((p, i) => {
          if (p.value === null) return;
          const last = i === line.points.length - 1;
          const tip = `${t("weekOf")} ${dateText(p.start)}: ${fmt(p.value, kind)}${last ? ` (${t("currentWeek")})` : ""}`;
          parts.push(
            `<circle class="pt${last ? " partial" : ""}" cx="${X(i).toFixed(1)}" cy="${Y(p.value).toFixed(1)}" r="${last ? 4 : 2.6}"><title>${esc(tip)}</title></circle>`,
          );
        });
      }
    }
    el.innerHTML = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(
      `${t("kpi")[kpi]} · ${lines[0].name}`,
    )}" data-points="${lines[0].points.filter((p) => p.value !== null).length}">${parts.join("")}</svg>`;
    $("chart-legend").innerHTML =
      lines.map((l) => `<span class="key ${l.cls}"><i aria-hidden="true"></i>${esc(l.name)}</span>`).join("") +
      `<span class="key partial"><i aria-hidden="true"></i>${esc(t("currentWeek"))}</span>`;
  }

  function renderNotFound() {
    state.view = null;
    $("unit-head").innerHTML = `<h2>${esc(t("notFound"))}</h2><p><a href="#/">${esc(t("back"))}</a></p>`;
  }

  // ---- status, key, navigation ------------------------------------------------------------

  function setStatus(kind, err) {
    const dot = $("live-dot");
    dot.className = `dot ${kind}`;
    dot.title = kind === "ok" ? t("polling") : t("offline");
    if (kind === "error") {
      const text = err instanceof HttpError ? `${t("offline")} (${err.status})` : t("offline");
      $("as-of").textContent = state.view ? `${t("asOf")} ${asOfText(state.view.k30.as_of)} · ${text}` : text;
    }
  }

  function askForKey(status) {
    const open = !$("key-dialog").hidden;
    state.waitingForKey = true;
    const err = $("key-error");
    if (status === 403) {
      err.textContent = t("keyScope");
      err.hidden = false;
    } else if (state.key) {
      err.textContent = t("keyBad");
      err.hidden = false;
    } else {
      err.hidden = true;
    }
    if (status === 401 && state.key) {
      state.key = "";
      localStorage.removeItem(KEY_STORE);
    }
    if (open) return; // already asking: keep what is being typed
    $("key-dialog").hidden = false;
    $("key-input").value = "";
    $("key-input").focus();
  }

  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    state.key = key;
    localStorage.setItem(KEY_STORE, key);
    $("key-dialog").hidden = true;
    state.waitingForKey = false;
    cache.clear();
    applyStaticTexts();
    load();
  });

  $("forget-key").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORE);
    state.key = "";
    cache.clear();
    applyStaticTexts();
    load();
  });

  document.querySelectorAll("[data-lang]").forEach((b) =>
    b.addEventListener("click", () => {
      state.lang = b.dataset.lang;
      localStorage.setItem(LANG_STORE, state.lang);
      render();
      if (!state.view) applyStaticTexts();
    }),
  );

  $("rank-sort").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-sort]");
    if (!b || b.dataset.sort === state.sort) return;
    state.sort = b.dataset.sort;
    applyStaticTexts();
    load();
  });
  $("rank-window").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-window]");
    if (!b || b.dataset.window === state.window) return;
    state.window = b.dataset.window;
    applyStaticTexts();
    load();
  });
  $("rank-filter").addEventListener("input", (e) => {
    state.filter = e.target.value;
    if (state.view) renderRanking(state.view);
  });
  $("chart-kpi").addEventListener("change", (e) => {
    state.chartKpi = e.target.value;
    if (state.view) renderChart(state.view);
    load();
  });
  // a click anywhere on a ranking row opens that unit
  $("ranking").addEventListener("click", (e) => {
    if (e.target.closest("a")) return;
    const row = e.target.closest("tr[data-code]");
    if (row) location.hash = `#/u/${row.dataset.code}`;
  });

  document.addEventListener("click", (e) => {
    const b = e.target.closest(".downloads button[data-format]");
    if (!b) return;
    const url = state.downloads[b.closest(".downloads").dataset.table];
    if (url) download(url, b.dataset.format);
  });
  $("reports").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-report]");
    if (b) download(`api/v1/units/${encodeURIComponent(state.code)}/report?${q({ period: b.dataset.report })}`, "xlsx");
  });
  $("print").addEventListener("click", () => window.print());

  function route() {
    const m = /^#\/u\/([A-Za-z0-9]{1,8})$/.exec(location.hash);
    const code = m ? m[1] : "VN";
    if (code !== state.code) {
      state.code = code;
      state.filter = "";
      state.scrolledTo = null;
      $("rank-filter").value = "";
      state.view = null;
      $("unit-head").innerHTML = `<p class="loading">${esc(t("loading"))}</p>`;
      window.scrollTo(0, 0);
    }
    if (!state.waitingForKey) load();
  }
  window.addEventListener("hashchange", route);

  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => state.view && renderChart(state.view), 150);
  });

  applyStaticTexts();
  $("unit-head").innerHTML = `<p class="loading">${esc(t("loading"))}</p>`;
  const first = /^#\/u\/([A-Za-z0-9]{1,8})$/.exec(location.hash);
  state.code = first ? first[1] : "VN";
  load();
})();
