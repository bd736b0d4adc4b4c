//! Every word the pages show, in Chinese (the default) and English.

use actix_web::HttpRequest;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    /// `?lang=en` (or a form's `lang` field) asks for English; anything
    /// else is Chinese.
    pub fn of(request: &HttpRequest) -> Lang {
        let english = request
            .query_string()
            .split('&')
            .any(|pair| pair == "lang=en");
        if english {
            Lang::En
        } else {
            Lang::Zh
        }
    }

    pub fn from_field(value: Option<&str>) -> Lang {
        if value == Some("en") {
            Lang::En
        } else {
            Lang::Zh
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    /// The query that keeps this language on a link (`` or `?lang=en`).
    pub fn query(self) -> &'static str {
        match self {
            Lang::Zh => "",
            Lang::En => "?lang=en",
        }
    }

    /// The field value forms carry it in.
    pub fn field(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// The other language, to switch to.
    pub fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }

    pub fn text(self) -> &'static Text {
        match self {
            Lang::Zh => &ZH,
            Lang::En => &EN,
        }
    }

    /// A report's state in words.
    pub fn state(self, state: &str) -> &'static str {
        let (zh, en) = match state {
            "submitted" => ("已提交，等待受理", "Submitted, waiting to be accepted"),
            "accepted" => ("已受理", "Accepted"),
            "rejected" => ("未受理", "Not accepted"),
            "assigned" => ("已派给网格员", "Assigned to a grid worker"),
            "escalated" => ("已交给相关部门", "Passed to a department"),
            "in_progress" => ("正在处理", "Being fixed"),
            "resolved" => ("已处理，等待确认", "Fixed, waiting for confirmation"),
            "confirmed" => ("已确认解决", "Confirmed fixed"),
            "closed" => ("已办结", "Closed"),
            "merged" => ("已与相同问题合并", "Merged with the same problem"),
            _ => ("处理中", "In progress"),
        };
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    /// A step of a report's timeline in words; `None` for steps the
    /// public page does not list.
    pub fn step(self, event_type: &str) -> Option<&'static str> {
        let (zh, en) = match event_type {
            "ReportSubmitted" => ("提交上报", "Filed"),
            "ReportAccepted" => ("受理", "Accepted"),
            "ReportRejected" => ("未受理", "Not accepted"),
            "ReportAssigned" => ("派单", "Assigned"),
            "ReportEscalated" => ("吹哨报到，交部门处理", "Passed to a department"),
            "ReportWorkStarted" => ("开始处理", "Work started"),
            "ReportResolved" => ("处理完毕", "Fixed"),
            "ReportConfirmed" => ("确认解决", "Confirmed"),
            "ReportReopened" => ("重新打开", "Reopened"),
            "ReportClosed" => ("办结", "Closed"),
            "ReportMerged" => ("合并", "Merged"),
            "ReportDeadlineMissed" => ("超时提醒", "A deadline was missed"),
            _ => return None,
        };
        Some(match self {
            Lang::Zh => zh,
            Lang::En => en,
        })
    }
}

pub struct Text {
    pub switch_to: &'static str,
    pub report_title: &'static str,
    pub grid: &'static str,
    pub category: &'static str,
    pub describe: &'static str,
    pub describe_hint: &'static str,
    pub photo: &'static str,
    pub photo_hint: &'static str,
    pub location_found: &'static str,
    pub submit: &'static str,
    pub anonymous_note: &'static str,
    pub signed_in_note: &'static str,
    pub retired: &'static str,
    pub retired_detail: &'static str,
    pub suggestion_title: &'static str,
    pub suggestion_label: &'static str,
    pub suggestion_submit: &'static str,
    pub uploading: &'static str,
    pub retrying: &'static str,
    pub sending: &'static str,
    pub upload_failed: &'static str,
    pub filed_title: &'static str,
    pub suggestion_filed_title: &'static str,
    pub claim_intro: &'static str,
    pub track: &'static str,
    pub signup_and_claim: &'static str,
    pub duplicate_note: &'static str,
    pub status_title: &'static str,
    pub filed_at: &'static str,
    pub state: &'static str,
    pub steps: &'static str,
    pub resolution: &'static str,
    pub text_redacted: &'static str,
    pub signup_title: &'static str,
    pub phone: &'static str,
    pub display_name: &'static str,
    pub send_code: &'static str,
    pub code: &'static str,
    pub code_sent: &'static str,
    pub verify: &'static str,
    pub demo_code: &'static str,
    pub claim_secret: &'static str,
    pub claimed: &'static str,
    pub signed_up: &'static str,
    pub sheet_title: &'static str,
    pub sheet_hint: &'static str,
    pub not_found: &'static str,
    pub not_found_detail: &'static str,
    pub rate_limited: &'static str,
    pub rate_limited_detail: &'static str,
    pub refused: &'static str,
    pub failed: &'static str,
    pub failed_detail: &'static str,
    pub back: &'static str,
}

static ZH: Text = Text {
    switch_to: "English",
    report_title: "随手拍，上报问题",
    grid: "网格",
    category: "问题类型",
    describe: "描述一下问题",
    describe_hint: "例如：河面有漂浮垃圾，靠近桥头",
    photo: "拍照（可选）",
    photo_hint: "最多 3 张，上传前会去掉位置等信息",
    location_found: "照片带有拍摄位置，已用于定位",
    submit: "提交上报",
    anonymous_note: "不登录也可以匿名上报；注册后可领取护水币。",
    signed_in_note: "已登录，上报计入您的护水币。",
    retired: "此点位已停用",
    retired_detail: "这个二维码已不再使用，请到附近其他点位扫码上报。感谢您对社区的关心！",
    suggestion_title: "意见箱",
    suggestion_label: "您的建议",
    suggestion_submit: "投递建议",
    uploading: "正在上传照片…",
    retrying: "网络不稳定，正在重试…",
    sending: "正在提交…",
    upload_failed: "照片没有传上去，请再试一次。",
    filed_title: "已收到您的上报",
    suggestion_filed_title: "已收到您的建议",
    claim_intro:
        "请保存下面的领取码（可截图）：注册后用它领取这条上报，赚取护水币。领取码只显示这一次。",
    track: "查看处理进度",
    signup_and_claim: "注册并领取",
    duplicate_note: "这里已有相同问题的上报，将一并处理。",
    status_title: "上报进度",
    filed_at: "上报时间",
    state: "当前状态",
    steps: "处理经过",
    resolution: "处理结果",
    text_redacted: "（内容已删除）",
    signup_title: "注册",
    phone: "手机号",
    display_name: "昵称",
    send_code: "获取验证码",
    code: "验证码",
    code_sent: "验证码已发送，10 分钟内有效。",
    verify: "确认",
    demo_code: "演示模式（不发短信）：验证码是",
    claim_secret: "领取码（可选）",
    claimed: "这条上报已归到您名下。",
    signed_up: "注册成功",
    sheet_title: "点位二维码",
    sheet_hint: "扫码上报问题",
    not_found: "找不到这个点位",
    not_found_detail: "请确认二维码是否完整。",
    rate_limited: "提交太频繁了",
    rate_limited_detail: "请稍后再试。",
    refused: "没有提交成功",
    failed: "出错了",
    failed_detail: "请稍后再试。",
    back: "返回",
};

static EN: Text = Text {
    switch_to: "中文",
    report_title: "Report a problem",
    grid: "Grid",
    category: "What kind of problem",
    describe: "Describe the problem",
    describe_hint: "For example: rubbish floating near the bridge",
    photo: "Photo (optional)",
    photo_hint: "Up to 3; location and camera details are removed before upload",
    location_found: "The photo carried where it was taken; it is used to place the report",
    submit: "Send the report",
    anonymous_note: "You may report without signing in; sign up to earn points.",
    signed_in_note: "Signed in: this report counts towards your points.",
    retired: "This site is retired",
    retired_detail: "This QR code is no longer in use. Please report at a nearby site. Thank you for caring about the community!",
    suggestion_title: "Suggestion box",
    suggestion_label: "Your suggestion",
    suggestion_submit: "Drop the suggestion",
    uploading: "Uploading the photo…",
    retrying: "The connection dropped; trying again…",
    sending: "Sending…",
    upload_failed: "The photo did not go through; please try again.",
    filed_title: "Report received",
    suggestion_filed_title: "Suggestion received",
    claim_intro: "Keep this claim code (a screenshot will do): sign up and claim this report with it to earn points. It is shown only once.",
    track: "Track this report",
    signup_and_claim: "Sign up and claim",
    duplicate_note: "This problem was already reported here; both will be handled together.",
    status_title: "Report status",
    filed_at: "Filed",
    state: "Now",
    steps: "Steps",
    resolution: "Resolution",
    text_redacted: "(removed)",
    signup_title: "Sign up",
    phone: "Phone number",
    display_name: "Display name",
    send_code: "Send me a code",
    code: "Code",
    code_sent: "The code was sent; it is good for 10 minutes.",
    verify: "Confirm",
    demo_code: "Demo mode (no SMS is sent): the code is",
    claim_secret: "Claim code (optional)",
    claimed: "The report is yours now.",
    signed_up: "Signed up",
    sheet_title: "Site QR codes",
    sheet_hint: "Scan to report a problem",
    not_found: "No such site",
    not_found_detail: "Please check that the QR code is whole.",
    rate_limited: "Too many at once",
    rate_limited_detail: "Please try again in a little while.",
    refused: "Not sent",
    failed: "Something went wrong",
    failed_detail: "Please try again later.",
    back: "Back",
};
